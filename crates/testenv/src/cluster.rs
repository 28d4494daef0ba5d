//! The Kubernetes side: kwokctl's binary runtime, plus one Ready kwok node.

use std::{path::Path, process::Command, time::Duration};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::{Api, Client, api::PostParams};

use crate::{TestenvError, error::io};

/// Folder layout inside an environment's directory that kwokctl owns.
pub(crate) const KWOK_WORKDIR: &str = "kwok";
/// The kwok node every environment has.
pub(crate) const NODE_NAME: &str = "kwok-node-0";

/// The multi-document configuration given to `kwokctl create cluster --config`.
fn kwok_config(bin: &Path, exec_dir: &Path) -> String {
    let versions = crate::binaries::versions();
    format!(
        r#"apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubectlBinary: {kubectl}
  kubeVersion: v{k8s}
  etcdVersion: {etcd}
  kwokVersion: v{kwok}
  nodeLeaseDurationSeconds: 40
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
        exec_dir = exec_dir.display(),
    )
}

/// `kwokctl create cluster`: etcd, kube-apiserver (RBAC and admission on), controller-manager,
/// scheduler and the kwok controller as local processes on free loopback ports.
pub(crate) fn create(
    name: &str,
    dir: &Path,
    bin: &Path,
    exec_dir: &Path,
) -> Result<(), TestenvError> {
    let config = dir.join("kwok-config.yaml");
    std::fs::write(&config, kwok_config(bin, exec_dir)).map_err(io(&config))?;
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
    kwokctl(dir, bin, &args)
}

fn kwokctl(dir: &Path, bin: &Path, args: &[String]) -> Result<(), TestenvError> {
    let out = Command::new(bin.join("kwokctl"))
        .args(args)
        .env("KWOK_WORKDIR", dir.join(KWOK_WORKDIR))
        .env("PATH", path_with(bin))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io(bin.join("kwokctl")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(TestenvError::Command {
        command: format!("kwokctl {}", args.join(" ")),
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
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
