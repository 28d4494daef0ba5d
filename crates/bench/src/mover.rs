//! `--data-mover`: moving a CSI snapshot's data into the bucket with Arca's data mover
//! (Arca installed from its image with the node agent, on a real node with the CSI hostpath
//! driver), against `restic backup` of the same data read from the volume's folder on the
//! node, to the same S3 server, in one run.
//!
//! Arca's side is timed twice: the copy alone (its PodVolumeBackup from InProgress to
//! Completed, as the bench watches it), which is what the data mover adds over a snapshot,
//! and the whole backup (`arca backup create --snapshot-move-data --wait`), which also holds
//! the storage system's work: the hostpath driver makes a snapshot by archiving the volume,
//! and a claim from it by unpacking the archive (a cloud disk's snapshot takes seconds
//! whatever its size). The node agent's peak memory is its process's VmHWM.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use arca_api::{PodVolumeBackup, PodVolumePhase};
use kube::Api;

/// The operator's namespace.
const SYS: &str = "arca-system";
/// The workload's namespace.
const APP: &str = "mover";
/// The bucket prefixes of the two contestants.
const ARCA_PREFIX: &str = "bench-mover-arca";
const RESTIC_PREFIX: &str = "bench-mover-restic";

/// Runs the comparison with `gib` GiB of random data; returns the report.
pub async fn run(env: &arca_testenv::Environment, arca: &Path, gib: f64) -> anyhow::Result<String> {
    let node = env
        .real_node
        .clone()
        .context("the environment has no real node")?;
    let csi = env
        .csi
        .clone()
        .context("the environment has no CSI driver")?;
    let (image, archive) = image()?;
    script(
        "hack/testenv/load.sh",
        &[env.dir.as_os_str(), archive.as_os_str()],
    )?;
    install(env, arca, &node, &image)?;

    let bytes = (gib * (1u64 << 30) as f64) as u64;
    kubectl(env, &["create", "namespace", APP])?;
    apply(env, &workload(&node.test_image, &csi.storage_class, bytes))?;
    kubectl(
        env,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/writer",
            "-n",
            APP,
            "--timeout=900s",
        ],
    )?;
    let volume = kubectl(
        env,
        &[
            "get",
            "pvc",
            "data",
            "-n",
            APP,
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    )?;
    let handle = kubectl(
        env,
        &[
            "get",
            "pv",
            volume.trim(),
            "-o",
            "jsonpath={.spec.csi.volumeHandle}",
        ],
    )?;
    let folder = csi.state_dir.join("volumes").join(handle.trim());
    anyhow::ensure!(
        folder.is_dir(),
        "{} is not the volume's folder",
        folder.display()
    );

    // Arca: the whole backup, and its copy as the bench sees it.
    let client = env.client().await?;
    let items: Api<PodVolumeBackup> = Api::namespaced(client, SYS);
    let watch = tokio::spawn(copy_time(items));
    let started = Instant::now();
    let out = Command::new(arca)
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args([
            "-n",
            SYS,
            "backup",
            "create",
            "moved",
            "--include-namespaces",
            APP,
        ])
        .args([
            "--snapshot-volumes",
            "true",
            "--snapshot-move-data",
            "--wait",
        ])
        .output()?;
    let whole = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "the backup did not complete: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = watch.await??;
    let agent_peak = agent_peak_kib()?;

    // restic: the same folder, on the host, to the same S3 server.
    let (restic_time, restic_peak) = restic(env, &folder)?;

    let mib = bytes as f64 / (1u64 << 20) as f64;
    let rate = |d: Duration| mib / d.as_secs_f64().max(1e-9);
    Ok(format!(
        "## Data mover: a {gib} GiB CSI snapshot moved into the bucket, against restic\n\n\
         | | seconds | MiB/s | peak memory |\n|---|---|---|---|\n\
         | Arca, the copy (its PodVolumeBackup, InProgress to Completed) | {} | {:.0} | agent {} MiB |\n\
         | Arca, the whole backup (snapshot, exposure, copy, clean-up) | {} | {:.0} | |\n\
         | `restic backup` of the volume's folder | {} | {:.0} | {} MiB |\n\n\
         Copy vs restic: **{:.2}x** restic's throughput (target: at least 1x); the agent's peak \
         {} MiB (target: under 300). The whole backup includes the hostpath driver archiving the \
         volume into its snapshot and unpacking it into the data mover's claim.\n",
        crate::secs(copy),
        rate(copy),
        agent_peak / 1024,
        crate::secs(whole),
        rate(whole),
        crate::secs(restic_time),
        rate(restic_time),
        restic_peak / 1024,
        restic_time.as_secs_f64() / copy.as_secs_f64().max(1e-9),
        agent_peak / 1024,
    ))
}

/// The image `make image` built: its reference (the last line of target/image/ref) and
/// its archive.
fn image() -> anyhow::Result<(String, PathBuf)> {
    let root = arca_testenv::workspace_root();
    let archive = root.join("target/image/arca.tar");
    let reference = std::fs::read_to_string(root.join("target/image/ref"))
        .ok()
        .and_then(|r| r.lines().last().map(str::to_string))
        .filter(|_| archive.is_file())
        .context("the data mover bench installs Arca's image: run `make image` first")?;
    Ok((reference, archive))
}

/// `arca install --use-node-agent` of `image`, the location on the environment's bucket;
/// returns once the operator, the agent and the location are ready.
fn install(
    env: &arca_testenv::Environment,
    arca: &Path,
    node: &arca_testenv::RealNode,
    image: &str,
) -> anyhow::Result<()> {
    let credentials = env.dir.join("bench-credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            env.s3.access_key_id, env.s3.secret_access_key
        ),
    )?;
    let config = format!(
        "region={},s3Url={},s3ForcePathStyle=true",
        env.s3.region, node.s3_endpoint_in_cluster
    );
    let kubelet = node.kubelet_root_dir.display().to_string();
    let secret = credentials.display().to_string();
    let out = Command::new(arca)
        .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
        .args(["-n", SYS, "install", "--use-node-agent", "--image", image])
        .args(["--kubelet-root-dir", &kubelet])
        .args(["--node-selector", "arca.dev/real-node=true"])
        .args(["--toleration", "arca.dev/real-node:NoSchedule"])
        .args([
            "--provider",
            "aws",
            "--bucket",
            &env.s3.bucket,
            "--prefix",
            ARCA_PREFIX,
        ])
        .args([
            "--backup-location-config",
            &config,
            "--secret-file",
            &secret,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "arca install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ns in [SYS.to_string(), format!("{SYS}-node-agent")] {
        wait_for_pods(env, &ns)?;
    }
    kubectl(
        env,
        &[
            "wait",
            "--for=condition=Available",
            "backupstoragelocations.arca.dev/default",
            "-n",
            SYS,
            "--timeout=300s",
        ],
    )?;
    Ok(())
}

/// Waits until `ns` has pods and all of them are Ready.
fn wait_for_pods(env: &arca_testenv::Environment, ns: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed = kubectl(env, &["get", "pods", "-n", ns, "-o", "name"])?;
        if !listed.trim().is_empty()
            && kubectl(
                env,
                &[
                    "wait",
                    "--for=condition=Ready",
                    "pods",
                    "--all",
                    "-n",
                    ns,
                    "--timeout=10s",
                ],
            )
            .is_ok()
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the pods of {ns} are not Ready");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A claim of the CSI class with `bytes` of random data, written by a pod on the real node
/// that is Ready once they are there.
fn workload(image: &str, class: &str, bytes: u64) -> String {
    let gib = bytes.div_ceil(1 << 30) + 1;
    format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: {APP}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: {class}
  resources: {{requests: {{storage: {gib}Gi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer, namespace: {APP}}}
spec:
  nodeSelector: {{arca.dev/real-node: "true"}}
  tolerations: [{{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}}]
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, "head -c {bytes} /dev/urandom > /data/big.bin && touch /data/.done; exec sleep 100000"]
    readinessProbe:
      exec: {{command: [test, -f, /data/.done]}}
      periodSeconds: 1
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]
"#
    )
}

/// How long the (one) PodVolumeBackup stays InProgress, watched every 100 ms.
async fn copy_time(items: Api<PodVolumeBackup>) -> anyhow::Result<Duration> {
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let list = items.list(&Default::default()).await?;
        let phase = list
            .items
            .first()
            .and_then(|i| i.status.as_ref())
            .and_then(|s| s.phase);
        match (phase, started) {
            (Some(PodVolumePhase::InProgress), None) => started = Some(Instant::now()),
            (Some(PodVolumePhase::Completed), Some(at)) => return Ok(at.elapsed()),
            (Some(PodVolumePhase::Completed), None) => {
                anyhow::bail!("the copy completed between two looks: use more data")
            }
            (Some(PodVolumePhase::Failed), _) => anyhow::bail!("the copy failed: {list:?}"),
            _ => {}
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the copy did not end within an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node agent's peak resident memory (VmHWM, KiB), read from /proc on this machine
/// (the agent's container is a process here).
fn agent_peak_kib() -> anyhow::Result<u64> {
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_agent = args.first().is_some_and(|a| a.ends_with(b"arca"))
            && args.get(1).is_some_and(|a| *a == b"agent");
        if !is_agent {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status"))?;
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            return Ok(kib);
        }
    }
    anyhow::bail!("no `arca agent` process found on this machine")
}

/// `restic init` + `restic backup <folder>` under GNU time; (wall time of the backup, its
/// peak memory in KiB).
fn restic(env: &arca_testenv::Environment, folder: &Path) -> anyhow::Result<(Duration, u64)> {
    let work = env.dir.join("bench-restic");
    std::fs::create_dir_all(&work)?;
    let repo = format!("s3:{}/{}/{RESTIC_PREFIX}", env.s3.endpoint, env.s3.bucket);
    let usage = work.join("usage");
    let run = |args: &[&str], timed: bool| -> anyhow::Result<()> {
        let mut cmd = if timed {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-f").arg("%M").arg("-o").arg(&usage).arg("restic");
            c
        } else {
            Command::new("restic")
        };
        let out = cmd
            .args(["-r", &repo, "--cache-dir"])
            .arg(work.join("cache"))
            .args(["-o", &format!("s3.region={}", env.s3.region)])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &env.s3.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &env.s3.secret_access_key)
            .env("RESTIC_PASSWORD", "bench")
            .output()
            .context("running restic (Debian package `restic`) under GNU time")?;
        anyhow::ensure!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run(&["init", "--repository-version", "2"], false)?;
    let started = Instant::now();
    run(
        &["backup", "--host", "bench", &folder.display().to_string()],
        true,
    )?;
    let took = started.elapsed();
    let peak = std::fs::read_to_string(&usage)?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("GNU time's peak memory")?;
    Ok((took, peak))
}

fn kubectl(env: &arca_testenv::Environment, args: &[&str]) -> anyhow::Result<String> {
    let out = env.kubectl().args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apply(env: &arca_testenv::Environment, yaml: &str) -> anyhow::Result<()> {
    let path = env.dir.join("bench-workload.yaml");
    std::fs::write(&path, yaml)?;
    kubectl(env, &["apply", "-f", &path.display().to_string()]).map(|_| ())
}

fn script(path: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let out = Command::new("bash")
        .arg(arca_testenv::workspace_root().join(path))
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
