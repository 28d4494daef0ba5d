//! Pod volume data: the operator in-process, the node agent as a real `arca agent` process
//! whose --host-pods-dir is a test folder laid out as kubelet's, the real S3 server, and the
//! plain `restic` CLI reading the repositories.

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, SystemTime},
};

use arca_api::{BackupPhase, PodVolumeBackup, PodVolumePhase, RestorePhase};
use arca_e2e::{
    TestEnv, eventually, kubectl, kubectl_apply,
    operator::{
        arca_binary, backup_done, phase_of_backup, phase_of_restore, restore_done, run_arca,
        succeeded,
    },
    restic::{own_password, restic, shared_password},
    scenario::{Scenario, assert_completed, assert_restored},
    store,
};
use arca_engine::protocol::RepositoryId;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

/// A pod whose volume `data` (an emptyDir) is asked for by annotation.
fn pod_yaml(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    backup.arca.dev/backup-volumes: data\nspec:\n  containers: [{{name: db, image: postgres, volumeMounts: [{{name: data, mountPath: /data}}]}}]\n  volumes: [{{name: data, emptyDir: {{}}}}]\n"
    )
}

/// kubelet's pods folder for this test, and the agent reading it.
pub(crate) struct Node {
    pods_dir: PathBuf,
    pub(crate) name: String,
}

impl Node {
    pub(crate) fn new(env: &TestEnv, tag: &str) -> Self {
        let pods_dir = env
            .env
            .dir
            .join(format!("kubelet-pods-{tag}-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&pods_dir).expect("pods dir");
        Self {
            pods_dir,
            name: String::new(),
        }
    }

    /// What kubelet does when it mounts an emptyDir: make the pod's volume folder.
    pub(crate) fn mount(&self, uid: &str, volume: &str) -> PathBuf {
        let dir = self
            .pods_dir
            .join(uid)
            .join("volumes/kubernetes.io~empty-dir")
            .join(volume);
        std::fs::create_dir_all(&dir).expect("volume folder");
        dir
    }

    pub(crate) fn spawn_agent(
        &self,
        env: &TestEnv,
        namespace: &str,
        log: &str,
    ) -> tokio::process::Child {
        let log = std::fs::File::create(env.env.dir.join(format!("logs/arca-agent-{log}.log")))
            .expect("log file");
        tokio::process::Command::new(arca_binary())
            .arg("agent")
            .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
            .args(["--namespace", namespace, "--node-name", &self.name])
            .arg(format!("--host-pods-dir={}", self.pods_dir.display()))
            .args(["--mount-wait", "2m", "--log-format", "text"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("arca agent starts")
    }
}

/// Waits for the pod to be scheduled; returns (uid, node).
pub(crate) async fn scheduled(client: &kube::Client, ns: &str, name: &str) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("pod {ns}/{name} scheduled"),
        Duration::from_secs(60),
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            let node = pod.spec.as_ref()?.node_name.clone()?;
            Some((pod.uid()?, node))
        },
    )
    .await
}

/// Fills `dir` with `big_mb` MiB of random data in one file, `small` small files in nested
/// folders, a symlink, a private file and a sparse file, with fixed mtimes.
pub(crate) fn fill(dir: &Path, big_mb: usize, small: usize, seed: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut big = std::fs::File::create(dir.join("big.bin")).expect("big file");
    let mut chunk = vec![0u8; 1024 * 1024];
    for _ in 0..big_mb {
        rng.fill_bytes(&mut chunk);
        big.write_all(&chunk).expect("write");
    }
    for i in 0..small {
        let sub = dir.join(format!("d{}/e{}", i % 10, i % 7));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let mut body = vec![0u8; rng.random_range(0..8192)];
        rng.fill_bytes(&mut body);
        std::fs::write(sub.join(format!("f{i}.txt")), body).expect("small file");
    }
    std::os::unix::fs::symlink("d0/e0/f0.txt", dir.join("link")).expect("symlink");
    std::fs::write(dir.join("private.key"), b"secret").expect("private");
    std::fs::set_permissions(
        dir.join("private.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    let mut sparse = std::fs::File::create(dir.join("sparse.img")).expect("sparse");
    sparse
        .seek(SeekFrom::Start(32 * 1024 * 1024))
        .expect("seek");
    sparse.write_all(b"end").expect("write");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for name in ["big.bin", "private.key", "sparse.img"] {
        std::fs::File::options()
            .write(true)
            .open(dir.join(name))
            .expect("open")
            .set_modified(when)
            .expect("mtime");
    }
}

/// Every entry under `dir`: relative path -> (kind, mode, mtime, content or link target).
pub(crate) fn tree(dir: &Path) -> BTreeMap<String, (char, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let rel = path
                .strip_prefix(dir)
                .expect("relative")
                .display()
                .to_string();
            let (kind, body) = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                ('l', target.display().to_string().into_bytes())
            } else if meta.is_dir() {
                stack.push(path.clone());
                ('d', Vec::new())
            } else {
                ('f', std::fs::read(&path).expect("read"))
            };
            let mtime = if kind == 'f' { meta.mtime() } else { 0 };
            out.insert(rel, (kind, meta.mode() & 0o7777, mtime, body));
        }
    }
    out
}

/// The ids in `restic snapshots --json` output.
fn snapshot_ids(json: &str) -> Vec<String> {
    let line = json
        .lines()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON list in restic's output: {json}"));
    let listed: Vec<serde_json::Value> = serde_json::from_str(line).expect("restic json");
    listed
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

/// Bytes stored under the namespace's repository.
async fn repository_bytes(env: &TestEnv, prefix: &str, ns: &str) -> u64 {
    store(env, prefix)
        .await
        .list(&format!("volumes/{ns}/"))
        .await
        .expect("list repository")
        .iter()
        .map(|o| o.size)
        .sum()
}

async fn volume_backups(client: &kube::Client, ns: &str) -> Vec<PodVolumeBackup> {
    Api::<PodVolumeBackup>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list pod volume backups")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volume_data_is_backed_up_checked_by_restic_restored_and_incremental() {
    let scenario = Scenario::start("db").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let ns = app.name.clone();
    kubectl_apply(env, &pod_yaml(&ns, "db-0"));
    let (uid, node_name) = scheduled(client, &ns, "db-0").await;
    let mut node = Node::new(env, "round-trip");
    node.name = node_name;
    let data = node.mount(&uid, "data");
    fill(&data, 64, 400, 7);
    let before = tree(&data);
    let _agent = node.spawn_agent(env, &arca.name, "round-trip");

    let first = scenario
        .backup_within("first", &scenario.app_spec(), Duration::from_secs(300))
        .await;
    assert_completed(&first);
    let items = volume_backups(client, &arca.name).await;
    assert_eq!(items.len(), 1, "one PodVolumeBackup: {items:?}");
    let status = items[0].status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(PodVolumePhase::Completed));
    let snapshot = status.snapshot_id.clone().expect("snapshot id");
    let progress = status.progress.clone().expect("progress");
    assert!(progress.total_bytes >= 64 * 1024 * 1024, "{progress:?}");
    // The Backup's status sums its work items' bytes; describe shows them.
    let backup_progress = first
        .status
        .clone()
        .and_then(|s| s.progress)
        .expect("backup progress");
    assert_eq!(
        (
            backup_progress.total_volume_bytes,
            backup_progress.volume_bytes_backed_up
        ),
        (progress.total_bytes, progress.total_bytes),
        "{backup_progress:?}"
    );
    let first_upload = repository_bytes(env, &prefix.prefix, &ns).await;

    // The plain restic CLI reads the repository with its own password, not the shared one.
    let password = own_password(client, &arca.name, &RepositoryId::new(&ns)).await;
    let shared = shared_password(client, &arca.name).await;
    let (ok, out) = restic(env, &prefix.prefix, &ns, &shared, &["snapshots"]);
    assert!(
        !ok && out.contains("wrong password"),
        "the shared password opens the repository: {out}"
    );
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &ns,
        &password,
        &["check", "--read-data"],
    );
    assert!(ok, "restic check: {out}");
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &ns,
        &password,
        &["snapshots", "--json"],
    );
    assert!(
        ok && snapshot_ids(&out) == vec![snapshot.clone()],
        "restic snapshots: {out}"
    );
    let listed = store(env, &prefix.prefix)
        .await
        .get("backups/first/volumes.json")
        .await
        .expect("volumes.json");
    assert!(
        String::from_utf8_lossy(&listed).contains(&snapshot),
        "volumes.json names the snapshot"
    );
    // `describe --details`: every item, and the volume's snapshot, read through the operator.
    let details = succeeded(&run_arca(
        env,
        &arca.name,
        &["backup", "describe", "first", "--details"],
    ));
    assert!(
        details.lines().any(|l| l.starts_with("Volume data:  ")
            && l.contains(" MiB of ")
            && l.ends_with(" MiB read by the node agents")),
        "{details}"
    );
    assert!(
        details.contains(&format!("  pods  {ns}/"))
            && details.contains(&format!("  namespaces  {ns}\n"))
            && details.contains(&format!("snapshot {}", &snapshot[..12])),
        "{details}"
    );

    // Unchanged data: the second backup uploads almost nothing.
    let second = scenario
        .backup_within("second", &scenario.app_spec(), Duration::from_secs(300))
        .await;
    assert_completed(&second);
    let grown = repository_bytes(env, &prefix.prefix, &ns).await - first_upload;
    assert!(
        grown * 100 < first_upload,
        "second backup stored {grown} bytes, first {first_upload}: not under 1%"
    );
    let reported: Vec<u64> = volume_backups(client, &arca.name)
        .await
        .iter()
        .filter_map(|i| i.status.as_ref()?.bytes_uploaded)
        .collect();
    assert!(
        reported.iter().any(|b| *b * 100 < first_upload),
        "status.bytesUploaded of the second backup: {reported:?}"
    );

    // Disaster: the namespace is gone. The restore recreates the pod; "kubelet" mounts its
    // (empty) volume; the agent fills it.
    kubectl(env, &["delete", "namespace", &ns, "--wait=true"]);
    scenario.apply_restore("back", "{backupName: first}");
    let (new_uid, _) = scheduled(client, &ns, "db-0").await;
    assert_ne!(new_uid, uid, "the pod is a new one");
    let restored_dir = node.mount(&new_uid, "data");
    assert_restored(
        &scenario
            .restore_done_within("back", Duration::from_secs(300))
            .await,
    );
    let after = tree(&restored_dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &before {
        assert!(
            after.get(path) == Some(entry),
            "{path} differs after restore"
        );
    }
    let sparse = std::fs::metadata(restored_dir.join("sparse.img")).expect("sparse");
    assert!(
        sparse.blocks() * 512 < sparse.len() / 2,
        "sparse.img is restored sparse ({} blocks for {} bytes)",
        sparse.blocks(),
        sparse.len()
    );

    // Deleting the first backup forgets its snapshot; the repository stays sound.
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: DeleteBackupRequest\nmetadata: {{name: drop-first, namespace: {}}}\nspec: {{backupName: first}}\n",
            arca.name
        ),
    );
    let requests: Api<arca_api::DeleteBackupRequest> = Api::namespaced(client.clone(), &arca.name);
    let processed = eventually(
        "the deletion processed",
        Duration::from_secs(180),
        || async {
            let status = requests.get("drop-first").await.ok()?.status?;
            (status.phase == Some(arca_api::DeleteBackupRequestPhase::Processed)).then_some(status)
        },
    )
    .await;
    assert!(processed.errors.is_empty(), "{:?}", processed.errors);
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &ns,
        &password,
        &["snapshots", "--json"],
    );
    assert!(ok, "restic snapshots: {out}");
    let ids = snapshot_ids(&out);
    assert_eq!(ids.len(), 1, "the second backup's snapshot stays: {out}");
    assert!(
        !ids.contains(&snapshot),
        "the first snapshot is forgotten: {out}"
    );
    let (ok, out) = restic(env, &prefix.prefix, &ns, &password, &["check"]);
    assert!(ok, "restic check after deletion: {out}");

    // Deleting the Restore removes what it left: its files and its PodVolumeRestores.
    let direct = store(env, &prefix.prefix).await;
    assert!(
        !direct
            .list("restores/back/")
            .await
            .expect("list")
            .is_empty(),
        "the restore wrote its results and logs"
    );
    let restores: Api<arca_api::PodVolumeRestore> = Api::namespaced(client.clone(), &arca.name);
    assert!(
        !restores
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    kubectl(
        env,
        &[
            "delete",
            "restore",
            "back",
            "-n",
            &arca.name,
            "--timeout=60s",
        ],
    );
    assert!(
        direct
            .list("restores/back/")
            .await
            .expect("list")
            .is_empty(),
        "its files are gone"
    );
    eventually(
        "its PodVolumeRestores to be gone",
        Duration::from_secs(60),
        || async {
            restores
                .list(&Default::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_failing_mid_upload_fails_the_volume_and_keeps_the_repository_sound() {
    // Enough for the manifests and the repository's creation, not for 48 MiB of data.
    let mut scenario = Scenario::prepare_flaky("flaky-db", 12 * 1024 * 1024).await;
    scenario.start_operator().await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let ns = app.name.clone();
    kubectl_apply(env, &pod_yaml(&ns, "db-0"));
    let (uid, node_name) = scheduled(client, &ns, "db-0").await;
    let mut node = Node::new(env, "flaky");
    node.name = node_name;
    fill(&node.mount(&uid, "data"), 48, 20, 11);
    let _agent = node.spawn_agent(env, &arca.name, "flaky");
    let backup = scenario
        .backup_within("cut", &scenario.app_spec(), Duration::from_secs(400))
        .await;
    assert_ne!(phase_of_backup(&backup), BackupPhase::Completed);
    let items = volume_backups(client, &arca.name).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let status = items[0].status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(PodVolumePhase::Failed), "{status:?}");
    let message = status.message.unwrap_or_default();
    assert!(!message.is_empty(), "the failure has a reason");
    assert!(status.snapshot_id.is_none(), "no snapshot is claimed");
    // Straight to the real server: whatever was uploaded, the repository is consistent.
    let password = own_password(client, &arca.name, &RepositoryId::new(&ns)).await;
    let (ok, out) = restic(env, &prefix.prefix, &ns, &password, &["check"]);
    assert!(ok, "restic check after the failed upload: {out}");
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &ns,
        &password,
        &["snapshots", "--json"],
    );
    assert!(
        ok && snapshot_ids(&out).is_empty(),
        "no snapshot was written: {out}"
    );
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_killed_mid_backup_leaves_the_volume_failed_never_completed() {
    let scenario = Scenario::start("killed-db").await;
    let (env, client, arca, app, _) = scenario.parts();
    let ns = app.name.clone();
    kubectl_apply(env, &pod_yaml(&ns, "db-0"));
    let (uid, node_name) = scheduled(client, &ns, "db-0").await;
    let mut node = Node::new(env, "killed");
    node.name = node_name;
    fill(&node.mount(&uid, "data"), 400, 10, 13);
    let mut agent = node.spawn_agent(env, &arca.name, "killed-1");
    scenario.apply_backup("cut", &scenario.app_spec());
    eventually(
        "the volume backup in progress",
        Duration::from_secs(120),
        || async {
            volume_backups(client, &arca.name)
                .await
                .iter()
                .any(|i| {
                    i.status.as_ref().and_then(|s| s.phase) == Some(PodVolumePhase::InProgress)
                })
                .then_some(())
        },
    )
    .await;
    agent.kill().await.expect("agent killed");
    let _agent = node.spawn_agent(env, &arca.name, "killed-2");
    let backup = scenario.backup_done("cut").await;
    assert_eq!(phase_of_backup(&backup), BackupPhase::PartiallyFailed);
    let items = volume_backups(client, &arca.name).await;
    let status = items[0].status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(PodVolumePhase::Failed), "{status:?}");
    assert!(
        status.message.unwrap_or_default().contains("agent stopped"),
        "the reason names the agent"
    );
    scenario.stop().await;
}

/// Deleting a Backup while its volumes are copied cancels it: the agent stops the copy still
/// running (a 1 TiB sparse file: minutes of reading, so it cannot have finished), the volume
/// snapshot a finished copy already wrote is forgotten, the work items and the backup's
/// folder in storage are removed, and an Event says so. The repository stays sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_running_backup_stops_its_copies_and_removes_what_it_wrote() {
    let scenario = Scenario::start("cancel-db").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let ns = app.name.clone();
    kubectl_apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  namespace: {ns}\n  annotations:\n    backup.arca.dev/backup-volumes: small,huge\nspec:\n  containers: [{{name: db, image: postgres, volumeMounts: [{{name: small, mountPath: /small}}, {{name: huge, mountPath: /huge}}]}}]\n  volumes: [{{name: small, emptyDir: {{}}}}, {{name: huge, emptyDir: {{}}}}]\n"
        ),
    );
    let (uid, node_name) = scheduled(client, &ns, "db-0").await;
    let mut node = Node::new(env, "cancel");
    node.name = node_name;
    fill(&node.mount(&uid, "small"), 1, 5, 17);
    let huge = std::fs::File::create(node.mount(&uid, "huge").join("disk.img")).expect("file");
    huge.set_len(1 << 40).expect("a 1 TiB sparse file");
    let _agent = node.spawn_agent(env, &arca.name, "cancel");
    scenario.apply_backup("gone", &scenario.app_spec());
    let volume_of = |i: &PodVolumeBackup| i.spec.volume.clone();
    eventually(
        "the small volume copied and the huge one being read",
        Duration::from_secs(180),
        || async {
            let items = volume_backups(client, &arca.name).await;
            let phase = |v: &str| {
                items
                    .iter()
                    .find(|i| volume_of(i) == v)
                    .and_then(|i| i.status.clone())
            };
            let small = phase("small")?;
            let huge = phase("huge")?;
            (small.phase == Some(PodVolumePhase::Completed)
                && huge.phase == Some(PodVolumePhase::InProgress)
                && huge.progress.is_some_and(|p| p.bytes_done > 0))
            .then_some(())
        },
    )
    .await;
    kubectl(
        env,
        &["delete", "backups.arca.dev", "gone", "-n", &arca.name],
    );

    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &arca.name);
    let note = eventually(
        "an Event saying the backup was canceled",
        Duration::from_secs(180),
        || async {
            events
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("BackupCanceled"))
                .and_then(|e| e.message)
        },
    )
    .await;
    assert!(
        note.contains("1 volume snapshots forgotten") && note.contains("folder in storage deleted"),
        "{note}"
    );
    assert!(!note.contains("not removed"), "{note}");
    assert!(
        volume_backups(client, &arca.name).await.is_empty(),
        "the work items are gone"
    );
    let left = store(env, &prefix.prefix)
        .await
        .list("backups/gone/")
        .await
        .expect("list the backup's folder");
    assert!(left.is_empty(), "left in storage: {left:?}");
    let agent_log =
        std::fs::read_to_string(env.env.dir.join("logs/arca-agent-cancel.log")).expect("agent log");
    assert!(
        agent_log.contains("asked to stop") && agent_log.contains("canceled"),
        "the agent stopped the copy: {agent_log}"
    );
    // The finished copy's snapshot is forgotten; what the stopped one uploaded is named by no
    // index or snapshot, and the repository checks clean.
    let password = own_password(client, &arca.name, &RepositoryId::new(&ns)).await;
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &ns,
        &password,
        &["snapshots", "--json"],
    );
    assert!(
        ok && snapshot_ids(&out).is_empty(),
        "restic snapshots: {out}"
    );
    let (ok, out) = restic(env, &prefix.prefix, &ns, &password, &["check"]);
    assert!(ok, "restic check: {out}");
    scenario.stop().await;
}

/// A tenant end to end, as its ServiceAccount: its Schedule backs up its namespace and its
/// pod's volume into its folder of the operator's location (`tenants/<ns>/`), the Backup
/// object comes back from storage after it is deleted, and its Restore brings the pod and
/// its data back. The runs act as `system:serviceaccount:<ns>:arca` (bound to `edit`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_s_schedule_backs_up_and_restores_its_volume_data_as_its_service_account() {
    let scenario = Scenario::start_tenant("team").await;
    let (env, client, arca, team, prefix) = scenario.parts();
    let t = team.name.clone();
    kubectl_apply(env, &pod_yaml(&t, "db-0"));
    let (uid, node_name) = scheduled(client, &t, "db-0").await;
    let mut node = Node::new(env, "tenant");
    node.name = node_name;
    let data = node.mount(&uid, "data");
    fill(&data, 4, 50, 11);
    let before = tree(&data);
    let _agent = node.spawn_agent(env, &arca.name, "tenant");

    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Schedule\nmetadata: {{name: nightly, namespace: {t}}}\nspec: {{schedule: \"@every 1h\", template: {{}}}}\n"
        ),
    );
    let backups: Api<arca_api::Backup> = Api::namespaced(client.clone(), &t);
    let name = eventually(
        "the schedule's first backup",
        Duration::from_secs(60),
        || async {
            let list = backups
                .list(&kube::api::ListParams::default().labels("arca.dev/schedule-name=nightly"))
                .await
                .ok()?;
            list.items.first().map(|b| b.name_any())
        },
    )
    .await;
    let first = backup_done(client, &t, &name, Duration::from_secs(300)).await;
    assert_eq!(
        phase_of_backup(&first),
        BackupPhase::Completed,
        "{:?}",
        first.status
    );
    let tenant_prefix = format!("{}/tenants/{t}", prefix.prefix);
    assert!(
        repository_bytes(env, &tenant_prefix, &t).await > 4 * 1024 * 1024,
        "the volume's data is in the tenant's repository"
    );
    let password = own_password(client, &arca.name, &RepositoryId::in_tenant_folder(&t)).await;
    let (ok, out) = restic(env, &tenant_prefix, &t, &password, &["check"]);
    assert!(ok, "restic check of the tenant's repository: {out}");

    // The Backup object is lost; storage is the truth, and the sync brings it back.
    kubectl(env, &["delete", "backup", &name, "-n", &t]);
    let back = eventually(
        "the backup to come back from the tenant's folder",
        Duration::from_secs(60),
        || async {
            let b = backups.get_opt(&name).await.ok()??;
            let synced = b.labels().get("arca.dev/synced-from-storage").cloned();
            (phase_of_backup(&b) == BackupPhase::Completed && synced.as_deref() == Some("true"))
                .then_some(b)
        },
    )
    .await;
    assert_eq!(
        back.spec.storage_location.as_deref(),
        Some("default"),
        "the operator's location, in the tenant's namespace"
    );

    // The pod is gone; the tenant's Restore brings it and its data back.
    kubectl(env, &["delete", "pod", "db-0", "-n", &t, "--wait=true"]);
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: back, namespace: {t}}}\nspec: {{backupName: {name}}}\n"
        ),
    );
    let (new_uid, _) = scheduled(client, &t, "db-0").await;
    assert_ne!(new_uid, uid, "the pod is a new one");
    let restored_dir = node.mount(&new_uid, "data");
    let restore = restore_done(client, &t, "back", Duration::from_secs(300)).await;
    assert_eq!(
        phase_of_restore(&restore),
        RestorePhase::Completed,
        "{:?}",
        restore.status
    );
    assert_eq!(tree(&restored_dir), before, "the volume's files are back");
    scenario.stop().await;
}

/// The restic CLI on the repository of `volumes_of` under `prefix`, with `password`: true
/// when restic refuses it as a wrong password (and says so), false when it opens.
fn refused(env: &TestEnv, prefix: &str, volumes_of: &str, password: &str) -> bool {
    let (ok, out) = restic(env, prefix, volumes_of, password, &["snapshots", "--json"]);
    assert!(
        ok || out.contains("wrong password"),
        "restic failed for another reason than the password: {out}"
    );
    !ok
}

/// A key per namespace: two namespaces back up a pod volume each; one of them already had a
/// repository made the old way (the shared password, and a snapshot in it), which the
/// operator re-keys before the backup. Afterwards `restic` opens each repository with its
/// own password only: not with the other namespace's, nor with the shared one. `arca volume
/// password` prints the same passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_namespace_s_repository_opens_with_its_own_password_only() {
    let scenario = Scenario::start("keys-a").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let a = app.name.clone();
    let other = scenario.namespace("keys-b").await;
    let b = other.name.clone();
    let shared = shared_password(client, &arca.name).await;

    // Namespace a's repository, as Arca made it before: opened by the shared password,
    // holding a snapshot.
    let (ok, out) = restic(env, &prefix.prefix, &a, &shared, &["init"]);
    assert!(ok, "restic init: {out}");
    let old_data = env.env.dir.join(format!("old-data-{a}"));
    std::fs::create_dir_all(&old_data).expect("old data");
    std::fs::write(old_data.join("old.txt"), b"backed up before the re-keying").expect("write");
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &a,
        &shared,
        &["backup", "--json", &old_data.display().to_string()],
    );
    assert!(ok, "restic backup: {out}");

    let mut node = Node::new(env, "keys");
    for ns in [&a, &b] {
        kubectl_apply(env, &pod_yaml(ns, "db-0"));
        let (uid, node_name) = scheduled(client, ns, "db-0").await;
        assert!(
            node.name.is_empty() || node.name == node_name,
            "one agent serves both pods: they are on {} and {node_name}",
            node.name
        );
        node.name = node_name;
        let data = node.mount(&uid, "data");
        fill(&data, 2, 20, 17);
    }
    let _agent = node.spawn_agent(env, &arca.name, "keys");
    let backup = scenario
        .backup_within(
            "both",
            &format!("{{includedNamespaces: [{a}, {b}]}}"),
            Duration::from_secs(300),
        )
        .await;
    assert_completed(&backup);

    let own_a = own_password(client, &arca.name, &RepositoryId::new(&a)).await;
    let own_b = own_password(client, &arca.name, &RepositoryId::new(&b)).await;
    assert_ne!(own_a, own_b);
    // Each opens with its own password: a's holds the old snapshot and the new one.
    let (ok, out) = restic(env, &prefix.prefix, &a, &own_a, &["snapshots", "--json"]);
    assert!(ok, "restic snapshots of {a} with its own password: {out}");
    assert_eq!(snapshot_ids(&out).len(), 2, "old and new snapshots: {out}");
    let (ok, out) = restic(env, &prefix.prefix, &a, &own_a, &["check"]);
    assert!(ok, "restic check of {a}: {out}");
    let (ok, out) = restic(env, &prefix.prefix, &b, &own_b, &["snapshots", "--json"]);
    assert!(ok, "restic snapshots of {b} with its own password: {out}");
    assert_eq!(snapshot_ids(&out).len(), 1, "{out}");
    // Not with the other namespace's, nor with the shared one (a's was re-keyed: its
    // shared key is gone).
    assert!(
        refused(env, &prefix.prefix, &a, &own_b),
        "{b}'s password opens {a}'s repository"
    );
    assert!(
        refused(env, &prefix.prefix, &b, &own_a),
        "{a}'s password opens {b}'s repository"
    );
    for ns in [&a, &b] {
        assert!(
            refused(env, &prefix.prefix, ns, &shared),
            "the shared password opens {ns}'s repository"
        );
    }
    let (ok, out) = restic(env, &prefix.prefix, &a, &own_a, &["key", "list", "--json"]);
    assert!(ok, "restic key list: {out}");
    let keys: Vec<serde_json::Value> = serde_json::from_str(
        out.lines()
            .find(|l| l.starts_with('['))
            .unwrap_or_else(|| panic!("no JSON list: {out}")),
    )
    .expect("key list json");
    assert_eq!(keys.len(), 1, "only the own key is left: {out}");

    // The admin's way to the same passwords: `arca volume password`.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(arca_binary())
            .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
            .args(["-n", &arca.name, "volume", "password"])
            .args(args)
            .output()
            .expect("arca runs");
        assert!(
            out.status.success(),
            "arca volume password {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    assert_eq!(cli(&[&a]), own_a);
    assert_eq!(cli(&["--repository", &format!("volumes/{b}/")]), own_b);
    assert_eq!(
        cli(&[&a, "--tenant-folder"]),
        own_password(client, &arca.name, &RepositoryId::in_tenant_folder(&a)).await
    );
    scenario.stop().await;
}

/// A repository that opens with the shared password only (as Arca made them before each
/// had its own, and as it stays in a location the operator does not write): the agent
/// restores from it and a deletion forgets in it, both falling back to the shared password,
/// and neither re-keys it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repository_not_yet_rekeyed_is_restored_and_pruned_with_the_shared_password() {
    let scenario = Scenario::start("legacy").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let ns = app.name.clone();
    kubectl_apply(env, &pod_yaml(&ns, "db-0"));
    let (uid, node_name) = scheduled(client, &ns, "db-0").await;
    let mut node = Node::new(env, "legacy");
    node.name = node_name;
    let data = node.mount(&uid, "data");
    fill(&data, 2, 20, 19);
    let before = tree(&data);
    let _agent = node.spawn_agent(env, &arca.name, "legacy");
    let first = scenario
        .backup_within("first", &scenario.app_spec(), Duration::from_secs(300))
        .await;
    assert_completed(&first);

    // Back to the old way: a key for the shared password, the repository's own removed.
    let own = own_password(client, &arca.name, &RepositoryId::new(&ns)).await;
    let shared = shared_password(client, &arca.name).await;
    let new_password = env.env.dir.join(format!("shared-password-{ns}"));
    std::fs::write(&new_password, &shared).expect("password file");
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &ns,
        &own,
        &[
            "key",
            "add",
            "--new-password-file",
            &new_password.display().to_string(),
        ],
    );
    assert!(ok, "restic key add: {out}");
    let (ok, out) = restic(env, &prefix.prefix, &ns, &own, &["key", "list", "--json"]);
    assert!(ok, "restic key list: {out}");
    let keys: Vec<serde_json::Value> = serde_json::from_str(
        out.lines()
            .find(|l| l.starts_with('['))
            .unwrap_or_else(|| panic!("no JSON list: {out}")),
    )
    .expect("key list json");
    let own_key = keys
        .iter()
        .find(|k| k["current"].as_bool() == Some(true))
        .and_then(|k| k["id"].as_str())
        .unwrap_or_else(|| panic!("no current key: {out}"))
        .to_string();
    let (ok, out) = restic(
        env,
        &prefix.prefix,
        &ns,
        &shared,
        &["key", "remove", &own_key],
    );
    assert!(ok, "restic key remove: {out}");
    assert!(refused(env, &prefix.prefix, &ns, &own), "own key removed");

    // The agent restores from it with the shared password.
    kubectl(env, &["delete", "namespace", &ns, "--wait=true"]);
    scenario.apply_restore("back", "{backupName: first}");
    let (new_uid, _) = scheduled(client, &ns, "db-0").await;
    let restored = node.mount(&new_uid, "data");
    assert_restored(
        &scenario
            .restore_done_within("back", Duration::from_secs(300))
            .await,
    );
    assert_eq!(tree(&restored), before, "the volume's files are back");

    // A deletion forgets the snapshot in it with the shared password.
    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: DeleteBackupRequest\nmetadata: {{name: drop-first, namespace: {}}}\nspec: {{backupName: first}}\n",
            arca.name
        ),
    );
    let requests: Api<arca_api::DeleteBackupRequest> = Api::namespaced(client.clone(), &arca.name);
    let processed = eventually(
        "the deletion processed",
        Duration::from_secs(180),
        || async {
            let status = requests.get("drop-first").await.ok()?.status?;
            (status.phase == Some(arca_api::DeleteBackupRequestPhase::Processed)).then_some(status)
        },
    )
    .await;
    assert!(processed.errors.is_empty(), "{:?}", processed.errors);
    let (ok, out) = restic(env, &prefix.prefix, &ns, &shared, &["snapshots", "--json"]);
    assert!(ok, "restic snapshots with the shared password: {out}");
    assert!(
        snapshot_ids(&out).is_empty(),
        "the snapshot is forgotten: {out}"
    );
    // Reading never re-keys: only the operator's backups do.
    assert!(
        refused(env, &prefix.prefix, &ns, &own),
        "re-keyed by a reader"
    );
    scenario.stop().await;
}

/// The second attack of the threat model: a bucket writer edits `volumes.json` of a backup of
/// their namespace to name the victim namespace's repository and snapshot, so that restoring
/// it puts the victim's data into the attacker's pod. Under the old seal the restore is
/// refused before anything is applied; sealed again (an insider holding the key), the
/// engine still refuses a volume paired with another namespace's repository. No
/// PodVolumeRestore is made, the attacker's namespace is not recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_volumes_json_pointing_at_another_namespace_s_data_is_refused() {
    let scenario = Scenario::start("victim").await;
    let (env, client, arca, app, prefix) = scenario.parts();
    let victim = app.name.clone();
    let attacker_ns = scenario.namespace("attacker").await;
    let attacker = attacker_ns.name.clone();
    let mut node = Node::new(env, "steal");
    for ns in [&victim, &attacker] {
        kubectl_apply(env, &pod_yaml(ns, "db-0"));
        let (uid, node_name) = scheduled(client, ns, "db-0").await;
        assert!(
            node.name.is_empty() || node.name == node_name,
            "one agent serves both pods"
        );
        node.name = node_name;
        fill(&node.mount(&uid, "data"), 1, 5, 23);
    }
    let _agent = node.spawn_agent(env, &arca.name, "steal");
    for (name, ns) in [("of-victim", &victim), ("of-attacker", &attacker)] {
        let backup = scenario
            .backup_within(
                name,
                &format!("{{includedNamespaces: [{ns}]}}"),
                Duration::from_secs(300),
            )
            .await;
        assert_completed(&backup);
    }
    let direct = store(env, &prefix.prefix).await;
    let read = |name: &'static str| {
        let direct = direct.clone();
        async move {
            let raw = direct
                .get(&format!("backups/{name}/volumes.json"))
                .await
                .expect("volumes.json");
            serde_json::from_slice::<serde_json::Value>(&raw).expect("json")
        }
    };
    let stolen = read("of-victim").await["snapshots"][0].clone();
    let mut forged = read("of-attacker").await;
    forged["snapshots"][0]["repository"] = stolen["repository"].clone();
    forged["snapshots"][0]["snapshotId"] = stolen["snapshotId"].clone();
    assert_eq!(stolen["repository"], format!("volumes/{victim}/"));
    let forged_bytes = serde_json::to_vec(&forged).expect("json");
    direct
        .put(
            "backups/of-attacker/volumes.json",
            forged_bytes.clone().into(),
        )
        .await
        .expect("volumes.json forged");

    kubectl(env, &["delete", "namespace", &attacker, "--wait=true"]);
    let restore_of = |name: &str| {
        format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: {name}, namespace: {}}}\nspec: {{backupName: of-attacker}}\n",
            arca.name
        )
    };
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let work: Api<arca_api::PodVolumeRestore> = Api::namespaced(client.clone(), &arca.name);

    // The attacker without the key: the seal no longer holds.
    kubectl_apply(env, &restore_of("steal"));
    let refused = restore_done(client, &arca.name, "steal", Duration::from_secs(120)).await;
    let status = refused.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&refused),
        RestorePhase::Failed,
        "{status:?}"
    );
    let said = status.failure_reason.clone().unwrap_or_default();
    assert!(
        said.contains("volumes.json is not authentic") && said.contains("nothing was restored"),
        "{said}"
    );
    assert!(
        namespaces.get_opt(&attacker).await.expect("read").is_none(),
        "nothing applied"
    );

    // An insider seals the forged file in: the engine still refuses the foreign repository.
    let (_, mut metadata) = arca_e2e::tamper::read(direct.as_ref(), "of-attacker").await;
    metadata["stats"]["volumesBytes"] = forged_bytes.len().into();
    metadata["stats"]["volumesSha256"] =
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&forged_bytes)).into();
    arca_e2e::tamper::reseal(client, &arca.name, &direct, "of-attacker", metadata).await;
    kubectl_apply(env, &restore_of("steal-sealed"));
    let failed = restore_done(client, &arca.name, "steal-sealed", Duration::from_secs(120)).await;
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(
        phase_of_restore(&failed),
        RestorePhase::Failed,
        "{status:?}"
    );
    let said = status.failure_reason.clone().unwrap_or_default();
    assert!(
        said.contains(&format!("names repository volumes/{victim}/")),
        "{said}"
    );
    assert!(
        namespaces.get_opt(&attacker).await.expect("read").is_none(),
        "nothing applied"
    );
    assert!(
        work.list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .all(|item| item.spec.pod.namespace != attacker),
        "no PodVolumeRestore for the attacker's pod"
    );
    scenario.stop().await;
}
