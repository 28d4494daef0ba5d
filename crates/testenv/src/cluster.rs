//! The Kubernetes side: kwokctl's binary runtime, plus one Ready kwok node.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::{Api, Client, api::PostParams};

use crate::{
    TestenvError,
    error::io,
    node::{KUBERNETES_SERVICE_IP, NodeSlot, SERVICE_CIDR},
};

/// Folder layout inside an environment's directory that kwokctl owns.
pub(crate) const KWOK_WORKDIR: &str = "kwok";
/// The kwok node every environment has.
pub(crate) const NODE_NAME: &str = "kwok-node-0";
/// The annotation that marks a node as kwok's to run.
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// The multi-document configuration given to `kwokctl create cluster --config`.
/// With a real node, the API server advertises the machine's end of the node's link (the
/// `kubernetes` Service's endpoint), serves a certificate valid for it and for the Service's
/// address, and presents a client certificate to the kubelet.
fn kwok_config(bin: &Path, exec_dir: &Path, pki: &Path, node: Option<&NodeSlot>) -> String {
    let versions = crate::binaries::versions();
    let mut sans = vec![KUBERNETES_SERVICE_IP.to_string()];
    let mut apiserver_args = vec![("service-cluster-ip-range", SERVICE_CIDR.to_string())];
    if let Some(node) = node {
        sans.push(node.host_ip());
        apiserver_args.push(("advertise-address", node.host_ip()));
        apiserver_args.push((
            "kubelet-client-certificate",
            pki.join("admin.crt").display().to_string(),
        ));
        apiserver_args.push((
            "kubelet-client-key",
            pki.join("admin.key").display().to_string(),
        ));
        apiserver_args.push(("kubelet-preferred-address-types", "InternalIP".into()));
    }
    let apiserver_args: String = apiserver_args
        .iter()
        .map(|(k, v)| format!("  - key: {k}\n    value: \"{v}\"\n"))
        .collect();
    format!(
        r#"apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubectlBinary: {kubectl}
  kubeVersion: v{k8s}
  etcdVersion: {etcd}
  kwokVersion: v{kwok}
  nodeLeaseDurationSeconds: 40
  kubeApiserverCertSANs: [{sans}]
componentsPatches:
- name: kube-apiserver
  extraArgs:
{apiserver_args}# One controller-manager and one scheduler: nothing to elect. With an election, a lease
# renewal that misses its deadline on a loaded machine makes the process exit, and kwokctl
# does not restart it: every controller would stop for the rest of the run.
- name: kube-controller-manager
  extraArgs:
  - key: leader-elect
    value: "false"
- name: kube-scheduler
  extraArgs:
  - key: leader-elect
    value: "false"
- name: kwok-controller
  extraArgs:
  # Only the nodes annotated as kwok's: a real kubelet's node is left alone.
  - key: manage-all-nodes
    value: "false"
    override: true
  - key: manage-nodes-with-annotation-selector
    value: "{KWOK_NODE_ANNOTATION}=fake"
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: run-on-host
spec:
  execs:
  - local:
      workDir: {exec_dir}
"#,
        kubectl = bin.join("kubectl").display(),
        k8s = versions.k8s,
        etcd = versions.etcd,
        kwok = versions.kwok,
        sans = sans.join(", "),
        exec_dir = exec_dir.display(),
    )
}

/// kwokctl's PKI folder of the cluster `name` in `dir` (ca.crt, admin.crt, admin.key).
pub(crate) fn pki_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(KWOK_WORKDIR)
        .join("clusters")
        .join(name)
        .join("pki")
}

/// kwokctl's log folder of the cluster `name` in `dir`.
pub(crate) fn log_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(KWOK_WORKDIR)
        .join("clusters")
        .join(name)
        .join("logs")
}

/// The API server's secure port, read from the kubeconfig kwokctl wrote.
pub(crate) fn api_port(kubeconfig: &Path) -> Result<u16, TestenvError> {
    let text = std::fs::read_to_string(kubeconfig).map_err(io(kubeconfig))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("server: https://"))
        .filter_map(|hostport| hostport.rsplit_once(':'))
        .find_map(|(_, port)| port.trim().parse().ok())
        .ok_or_else(|| TestenvError::BadFile {
            path: kubeconfig.to_path_buf(),
            message: "no `server: https://host:port` line".into(),
        })
}

/// How long `kwokctl create cluster` may take before the start counts as failed.
const CREATE_TIMEOUT: Duration = Duration::from_secs(200);

/// `kwokctl create cluster`: etcd, kube-apiserver (RBAC and admission on), controller-manager,
/// scheduler and the kwok controller as local processes on free loopback ports.
/// Fails within [`CREATE_TIMEOUT`] with the components' last error lines.
pub(crate) fn create(
    name: &str,
    dir: &Path,
    bin: &Path,
    exec_dir: &Path,
    node: Option<&NodeSlot>,
) -> Result<(), TestenvError> {
    let config = dir.join("kwok-config.yaml");
    std::fs::write(
        &config,
        kwok_config(bin, exec_dir, &pki_dir(dir, name), node),
    )
    .map_err(io(&config))?;
    let b = |n: &str| bin.join(n).display().to_string();
    let args = [
        "create".to_string(),
        "cluster".into(),
        format!("--name={name}"),
        "--runtime=binary".into(),
        format!("--kube-apiserver-binary={}", b("kube-apiserver")),
        format!(
            "--kube-controller-manager-binary={}",
            b("kube-controller-manager")
        ),
        format!("--kube-scheduler-binary={}", b("kube-scheduler")),
        format!("--kwok-controller-binary={}", b("kwok")),
        format!("--etcd-binary={}", b("etcd")),
        format!("--kubeconfig={}", dir.join("kubeconfig").display()),
        format!("--config={}", config.display()),
        "--kube-authorization=true".into(),
        "--kube-admission=true".into(),
        "--disable-qps-limits=true".into(),
        "--wait=3m".into(),
    ];
    kwokctl(dir, bin, &args, CREATE_TIMEOUT).map_err(|e| match e {
        TestenvError::Command {
            command,
            code,
            output,
        } => TestenvError::ComponentFailed {
            what: format!("`{command}` failed (exit {code:?}): {}", output.trim()),
            evidence: last_errors(&log_files(&log_dir(dir, name))),
        },
        other => other,
    })
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

/// For each log, its last line that reads like a failure (or its last line), so a start
/// that fails says which component failed and why.
pub(crate) fn last_errors(logs: &[PathBuf]) -> String {
    let mut out = String::new();
    for path in logs {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let failure = |l: &&str| {
            let l = l.to_ascii_lowercase();
            [
                "error",
                "fatal",
                "failed",
                "panic",
                "refused",
                "address already in use",
            ]
            .iter()
            .any(|w| l.contains(w))
        };
        let line = text
            .lines()
            .rev()
            .find(failure)
            .or_else(|| text.lines().next_back());
        if let Some(line) = line {
            let line: String = line.chars().take(600).collect();
            out.push_str(&format!("  {}: {}\n", path.display(), line.trim()));
        }
    }
    if out.is_empty() {
        out.push_str("  (no component logged anything)\n");
    }
    out
}

fn kwokctl(dir: &Path, bin: &Path, args: &[String], timeout: Duration) -> Result<(), TestenvError> {
    let command = format!("kwokctl {}", args.join(" "));
    let out_path = dir.join("logs/kwokctl.log");
    let out = std::fs::File::create(&out_path).map_err(io(&out_path))?;
    let err = out.try_clone().map_err(io(&out_path))?;
    let mut child = Command::new(bin.join("kwokctl"))
        .args(args)
        .env("KWOK_WORKDIR", dir.join(KWOK_WORKDIR))
        .env("PATH", path_with(bin))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(bin.join("kwokctl")))?;
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io(bin.join("kwokctl")))? {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(TestenvError::Command {
            command,
            code: s.code(),
            output,
        }),
        None => Err(TestenvError::Command {
            command,
            code: None,
            output: format!(
                "no result after {}s (stopped); its output: {output}",
                timeout.as_secs()
            ),
        }),
    }
}

/// Serializes the part of `up` that picks free ports and binds them (the S3 server's, and
/// kwokctl's for etcd and the control plane), across every process on this machine: two
/// environments started at the same moment never pick the same port. Held until dropped.
pub(crate) struct PortLock {
    _file: std::fs::File,
}

impl PortLock {
    pub(crate) fn acquire() -> Result<Self, TestenvError> {
        let path = std::env::temp_dir().join("arca-testenv-ports.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(Self { _file: file })
    }
}

/// PATH with the components' folder first, so kwokctl finds our builds and never downloads.
pub(crate) fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut parts = vec![bin.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(parts).unwrap_or_default()
}

/// Creates the kwok node and waits until it is Ready and pods can be admitted
/// (the `default` ServiceAccount exists).
pub(crate) async fn add_ready_node(client: &Client, log: &Path) -> Result<(), TestenvError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok"
            }
        },
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"}
        }
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let ready = || async {
        let node = nodes.get(NODE_NAME).await.ok()?;
        let conditions = node.status?.conditions?;
        conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    };
    wait_for("the kwok node to be Ready", 60, log, ready).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let has_default = || async { accounts.get("default").await.ok().map(|_| ()) };
    wait_for(
        "the default ServiceAccount (kube-controller-manager)",
        60,
        log,
        has_default,
    )
    .await
}

/// Polls `check` twice a second until it yields `Some`, for at most `seconds`.
pub(crate) async fn wait_for<F, Fut>(
    what: &str,
    seconds: u64,
    log: &Path,
    check: F,
) -> Result<(), TestenvError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if check().await.is_some() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(TestenvError::Timeout {
                what: what.into(),
                seconds,
                log: log.to_path_buf(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_quotes_each_component_s_last_failure() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("arca-testenv-logs-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("etcd.log"),
            "starting\n{\"level\":\"fatal\",\"msg\":\"listen tcp 127.0.0.1:2379: bind: address already in use\"}\nexiting\n",
        )?;
        std::fs::write(dir.join("kube-apiserver.log"), "waiting for etcd\n")?;
        std::fs::write(dir.join("notes.txt"), "error: not a log\n")?;
        let quoted = last_errors(&log_files(&dir));
        std::fs::remove_dir_all(&dir)?;
        assert!(
            quoted.contains("etcd.log") && quoted.contains("address already in use"),
            "{quoted}"
        );
        assert!(
            quoted.contains("kube-apiserver.log: waiting for etcd"),
            "{quoted}"
        );
        assert!(!quoted.contains("notes.txt"), "{quoted}");
        assert!(last_errors(&[]).contains("no component logged anything"));
        Ok(())
    }

    #[test]
    fn the_api_port_comes_from_the_kubeconfig() -> std::io::Result<()> {
        let path = std::env::temp_dir().join(format!("arca-kubeconfig-{}", rand::random::<u32>()));
        std::fs::write(
            &path,
            "clusters:\n- cluster:\n    server: https://127.0.0.1:32764\n",
        )?;
        let port = api_port(&path);
        std::fs::remove_file(&path)?;
        assert_eq!(port.ok(), Some(32764));
        Ok(())
    }
}
