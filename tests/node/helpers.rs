//! What the real-node tests share: the environment, the image, the `arca` binary, and a look
//! at a container's process from the node (what the runtime really enforced).

use std::{path::PathBuf, process::Output, time::Duration};

use arca_e2e::{TestEnv, eventually, kubectl};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::ListParams};

/// The environment with its real node, and Arca's image imported into the node.
pub fn node_env() -> &'static TestEnv {
    let env = match TestEnv::shared_with_real_node() {
        Ok(env) => env,
        Err(why) => panic!("{why}"),
    };
    load_image(env);
    env
}

pub fn real_node(env: &TestEnv) -> &arca_testenv::RealNode {
    env.env
        .real_node
        .as_ref()
        .expect("the environment has a real node")
}

/// The image reference `make image` wrote (its last line), or `ARCA_IMAGE`.
pub fn image() -> String {
    std::env::var("ARCA_IMAGE").unwrap_or_else(|_| {
        format!(
            "ghcr.io/arca-dev/arca:{}",
            std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.1.0".into())
        )
    })
}

fn image_archive() -> PathBuf {
    arca_testenv::workspace_root().join("target/image/arca.tar")
}

/// Imports target/image/arca.tar into the node's containerd once per test process.
pub fn load_image(env: &TestEnv) {
    static LOADED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    LOADED.get_or_init(|| import_image(env));
}

/// Imports target/image/arca.tar into the real node of `env` (another environment than the
/// shared one: [`load_image`] does that one once).
pub fn import_image(env: &TestEnv) {
    {
        let archive = image_archive();
        assert!(
            archive.is_file(),
            "{} is missing: build the image first (`make image`; `make e2e` does)",
            archive.display()
        );
        let out = std::process::Command::new("bash")
            .arg(arca_testenv::workspace_root().join("hack/testenv/load.sh"))
            .arg(&env.env.dir)
            .arg(&archive)
            .output()
            .expect("load.sh runs");
        assert!(
            out.status.success(),
            "importing the image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = ctr(env, &["images", "ls", "-q"]);
        assert!(
            listed.lines().any(|l| l.trim() == image()),
            "the node's containerd does not list {} after the import: {listed}",
            image()
        );
    }
}

/// `ctr` against the node's containerd (namespace k8s.io), as root on the machine.
pub fn ctr(env: &TestEnv, args: &[&str]) -> String {
    let node = real_node(env);
    let out = std::process::Command::new("ctr")
        .arg("--address")
        .arg(&node.containerd_socket)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .expect("ctr runs");
    assert!(
        out.status.success(),
        "ctr {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `arca` binary (target/debug/arca) against the environment, in `namespace`.
pub fn arca(env: &TestEnv, namespace: &str, args: &[&str]) -> Output {
    std::process::Command::new(arca_e2e::operator::arca_binary())
        .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
        .args(["-n", namespace])
        .args(args)
        .output()
        .expect("arca runs")
}

/// `sha256sum` of each file under `/data` in pod `ns/pod` (but the marker `.done`), by path.
pub fn files_under_data(
    env: &TestEnv,
    ns: &str,
    pod: &str,
) -> std::collections::BTreeMap<String, String> {
    sums(&kubectl(
        env,
        &[
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "sh",
            "-c",
            "cd /data && find . -type f ! -name .done | xargs sha256sum",
        ],
    ))
}

/// `sha256sum` output as path -> sum.
pub fn sums(listing: &str) -> std::collections::BTreeMap<String, String> {
    listing
        .lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(sum, path)| (path.trim_start_matches("./").to_string(), sum.to_string()))
        .collect()
}

/// stdout of a command that must succeed.
pub fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An AWS shared-credentials file for the environment's S3 server.
pub fn credentials_file(env: &TestEnv) -> PathBuf {
    let path = env
        .env
        .dir
        .join(format!("credentials-{}", rand::random::<u32>()));
    std::fs::write(
        &path,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            env.env.s3.access_key_id, env.env.s3.secret_access_key
        ),
    )
    .expect("credentials file");
    path
}

/// `arca install --use-node-agent` of the image into `sys`, as a user installs it: the
/// operator and the agents on the real node (its kubelet folder), the location on the
/// environment's bucket under `prefix`. Returns what `arca install` printed.
pub fn install_arca(env: &TestEnv, sys: &str, prefix: &str) -> String {
    let node = real_node(env);
    let credentials = credentials_file(env);
    let config = format!(
        "region={},s3Url={},s3ForcePathStyle=true",
        env.env.s3.region, node.s3_endpoint_in_cluster
    );
    let out = ok(
        "arca install",
        &arca(
            env,
            sys,
            &[
                "install",
                "--use-node-agent",
                "--image",
                &image(),
                "--kubelet-root-dir",
                &node.kubelet_root_dir.display().to_string(),
                "--node-selector",
                "arca.dev/real-node=true",
                "--toleration",
                "arca.dev/real-node:NoSchedule",
                "--provider",
                "aws",
                "--bucket",
                &env.env.s3.bucket,
                "--prefix",
                prefix,
                "--backup-location-config",
                &config,
                "--secret-file",
                &credentials.display().to_string(),
            ],
        ),
    );
    assert!(out.contains("Arca is installed"), "{out}");
    out
}

/// `arca restore create <restore> --from-backup <backup> --wait` in `sys`, Completed; then the
/// restored pod matching `selector` in `ns` once Ready, whose first init container is the
/// restore helper (of Arca's image) that held its containers until its volumes were filled.
pub async fn restored_with_helper(
    env: &TestEnv,
    client: &Client,
    (sys, restore, backup): (&str, &str, &str),
    (ns, selector): (&str, &str),
    timeout: Duration,
) -> Pod {
    let out = ok(
        "arca restore create",
        &arca(
            env,
            sys,
            &[
                "restore",
                "create",
                restore,
                "--from-backup",
                backup,
                "--wait",
            ],
        ),
    );
    assert!(out.contains("Completed"), "{out}");
    let restored = ready_pods(client, ns, selector, 1, timeout).await.remove(0);
    let inits = restored
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default();
    assert_eq!(
        inits.first().map(|c| c.name.as_str()),
        Some("arca-restore-wait"),
        "the restore helper runs first: {inits:?}"
    );
    assert_eq!(inits[0].image.as_deref(), Some(image().as_str()));
    restored
}

/// [`install_arca`], then waits for the operator, the node agent Ready on the real node,
/// and the location Available.
pub async fn install_with_agent(
    env: &TestEnv,
    client: &Client,
    sys: &str,
    prefix: &str,
    timeout: Duration,
) {
    let node = real_node(env).name.clone();
    install_arca(env, sys, prefix);
    ready_pods(
        client,
        sys,
        "app.kubernetes.io/component=operator",
        1,
        timeout,
    )
    .await;
    let agents: Api<Pod> = Api::namespaced(client.clone(), &format!("{sys}-node-agent"));
    eventually("the node agent Ready on the real node", timeout, || async {
        let list = agents.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|p| {
                is_ready(p) && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node)
            })
            .then_some(())
    })
    .await;
    location_available(env, sys, "default", timeout).await;
}

/// Waits until `arca location get <location>` in `sys` says Available.
pub async fn location_available(env: &TestEnv, sys: &str, location: &str, timeout: Duration) {
    eventually(
        &format!("location {location} to be Available"),
        timeout,
        || async {
            let out = arca(env, sys, &["location", "get", location, "-o", "json"]);
            String::from_utf8_lossy(&out.stdout)
                .contains("\"Available\"")
                .then_some(())
        },
    )
    .await;
}

/// The pods matching `selector` in `namespace` once `count` of them are Ready.
pub async fn ready_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(selector);
    eventually(
        &format!("{count} Ready pod(s) {selector} in {namespace}"),
        timeout,
        || async {
            let list = pods.list(&params).await.ok()?;
            let ready: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
                .collect();
            (ready.len() == count).then_some(ready)
        },
    )
    .await
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the kernel says of a running container's main process, read on the node: the
/// runtime's enforcement, not the pod spec's wish.
#[derive(Debug)]
pub struct ProcessFacts {
    pub uid: String,
    pub effective_caps: u64,
    pub no_new_privs: bool,
    pub seccomp_filtered: bool,
    pub root_read_only: bool,
}

/// The facts of container `container` of `pod`.
pub fn process_facts(env: &TestEnv, pod: &Pod, container: &str) -> ProcessFacts {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .and_then(|c| c.container_id.clone())
        .expect("the container has an id");
    let id = id.trim_start_matches("containerd://");
    let tasks = ctr(env, &["tasks", "ls"]);
    let pid = tasks
        .lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("containerd lists the container's task");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mounts");
    // mountinfo: id parent dev root mountpoint options ...; the last mount on / is the root.
    let root_read_only = mountinfo
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .rev()
        .find(|f| f.get(4) == Some(&"/"))
        .and_then(|f| f.get(5).map(|o| o.split(',').any(|x| x == "ro")))
        .unwrap_or(false);
    ProcessFacts {
        uid: field("Uid")
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        effective_caps: u64::from_str_radix(&field("CapEff"), 16).expect("CapEff"),
        no_new_privs: field("NoNewPrivs") == "1",
        seccomp_filtered: field("Seccomp") == "2",
        root_read_only,
    }
}

/// Removes what `arca install` made cluster-wide and in `namespace` (for the next test).
pub fn uninstall(env: &TestEnv, namespace: &str) -> String {
    ok(
        "arca uninstall",
        &arca(env, namespace, &["uninstall", "--wait"]),
    )
}

/// `kubectl logs` of one container.
pub fn logs(env: &TestEnv, namespace: &str, pod: &str, container: &str) -> String {
    kubectl(env, &["logs", "-n", namespace, pod, "-c", container])
}
