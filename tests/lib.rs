//! Helpers shared by the end-to-end tests.

use std::time::Duration;

pub mod operator;
pub mod restic;
pub mod scenario;
pub mod tamper;
pub mod velero;

pub use arca_testenv::{TestEnv, TestNamespace, TestPrefix};

/// The shared test environment, or a failed test saying why it is missing: never a skip.
pub fn env() -> &'static TestEnv {
    match TestEnv::shared() {
        Ok(env) => env,
        Err(why) => panic!("{why}"),
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Installs (server-side apply, idempotent) every Arca CRD and waits until each is
/// Established.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::{
        Api,
        api::{Patch, PatchParams},
        runtime::wait::{await_condition, conditions},
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in arca_api::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("arca-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await??;
    }
    Ok(())
}

/// The ServiceAccount `name` in `namespace`, bound to the ClusterRole `role` there: what a
/// namespace's admin does to let Arca's runs act in it.
pub fn tenant_account(env: &TestEnv, namespace: &str, name: &str, role: &str) {
    kubectl(env, &["create", "serviceaccount", name, "-n", namespace]);
    kubectl(
        env,
        &[
            "create",
            "rolebinding",
            &format!("{name}-{role}"),
            "-n",
            namespace,
            &format!("--clusterrole={role}"),
            &format!("--serviceaccount={namespace}:{name}"),
        ],
    );
}

/// `kubectl apply -f -` of `yaml` (server-side), as a user would.
pub fn kubectl_apply(env: &TestEnv, yaml: &str) {
    use std::io::Write;
    let mut child = env
        .env
        .kubectl()
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("yaml written");
    let out = child.wait_with_output().expect("kubectl finished");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubectl` with arguments; returns stdout, panics with stderr on failure.
pub fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    let out = env.env.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test bucket under `prefix`, as Arca's own store.
pub async fn store(env: &TestEnv, prefix: &str) -> std::sync::Arc<dyn arca_store::ObjectStore> {
    let s3 = &env.env.s3;
    std::sync::Arc::new(
        arca_store::S3Store::new(arca_store::S3Config {
            bucket: s3.bucket.clone(),
            prefix: prefix.into(),
            region: Some(s3.region.clone()),
            endpoint: Some(s3.endpoint.clone()),
            force_path_style: true,
            credentials: Some(arca_store::SharedCredentials {
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.clone(),
                session_token: None,
            }),
            ca_pem: None,
            public_endpoint: None,
            ..Default::default()
        })
        .await
        .expect("store"),
    )
}

/// Every entry of a backup's index, read from the bucket.
pub async fn index_of(
    env: &TestEnv,
    prefix: &str,
    backup: &str,
) -> Vec<arca_store::archive::IndexEntry> {
    let store = store(env, prefix).await;
    let mut rx = arca_store::archive::read_index(store.as_ref(), backup)
        .await
        .expect("index");
    let mut out = Vec::new();
    while let Some(entry) = rx.recv().await {
        out.push(entry.expect("index entry"));
    }
    out
}

/// Applies a fixture in two passes: everything, then (once CRDs are Established) the
/// custom resources, whose kinds are listed in `custom_kinds`.
pub fn apply_fixture(env: &TestEnv, yaml: &str, custom_kinds: &[&str]) {
    let (custom, rest): (Vec<&str>, Vec<&str>) = yaml.split("\n---\n").partition(|doc| {
        custom_kinds
            .iter()
            .any(|k| doc.contains(&format!("kind: {k}\n")))
    });
    kubectl_apply(env, &rest.join("\n---\n"));
    if !custom.is_empty() {
        kubectl(
            env,
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ],
        );
        kubectl_apply(env, &custom.join("\n---\n"));
    }
}

/// Objects as `kubectl get TYPES -n NS -o json` lists them, keyed `kind/name`, with the
/// fields a restore may change by design removed (see `normalize`).
pub fn snapshot(
    env: &TestEnv,
    namespace: Option<&str>,
    types: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut args = vec!["get", types, "-o", "json"];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    let list: serde_json::Value = serde_json::from_str(&kubectl(env, &args)).expect("json");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let key = format!(
                "{}/{}",
                item["kind"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, normalize(item.clone()))
        })
        .collect()
}

/// Drops what the apiserver sets, and what a restore changes on purpose (Arca's labels,
/// Services' cluster IPs and node ports, binding annotations).
pub fn normalize(mut item: serde_json::Value) -> serde_json::Value {
    if let Some(root) = item.as_object_mut() {
        root.remove("status");
        if let Some(meta) = root.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "managedFields",
                "generation",
                "ownerReferences",
                "namespace",
            ] {
                meta.remove(field);
            }
            if let Some(labels) = meta.get_mut("labels").and_then(|l| l.as_object_mut()) {
                labels.retain(|k, _| !k.starts_with("arca.dev/"));
                if labels.is_empty() {
                    meta.remove("labels");
                }
            }
            if let Some(annotations) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                annotations.retain(|k, _| {
                    !k.starts_with("pv.kubernetes.io/") && !k.starts_with("volume.kubernetes.io/")
                });
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
        if let Some(spec) = root.get_mut("spec").and_then(|s| s.as_object_mut()) {
            if spec.get("clusterIP").and_then(|c| c.as_str()) != Some("None") {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            spec.remove("healthCheckNodePort");
            if let Some(ports) = spec.get_mut("ports").and_then(|p| p.as_array_mut()) {
                for port in ports.iter_mut().filter_map(|p| p.as_object_mut()) {
                    port.remove("nodePort");
                }
            }
            if let Some(claim) = spec.get_mut("claimRef").and_then(|c| c.as_object_mut()) {
                claim.remove("uid");
                claim.remove("resourceVersion");
            }
        }
    }
    item
}

/// Creates `count` ConfigMaps `cm-<i>` of about `size` bytes of incompressible data,
/// 32 at a time.
pub async fn create_configmaps(client: &kube::Client, namespace: &str, count: usize, size: usize) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let data: String = (0..size)
                    .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
                    .collect();
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("cm-{i}")},
                    "data": {"payload": data}
                }))
                .expect("configmap");
                api.create(&kube::api::PostParams::default(), &cm)
                    .await
                    .expect("configmap created");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// A TCP proxy in front of a real server that breaks every connection once `budget`
/// bytes have gone upstream, and refuses all later ones: a network failure mid-upload.
#[derive(Debug)]
pub struct FaultyProxy {
    pub endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    pub async fn start(upstream: &str, budget: u64) -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listens");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if sent.load(Ordering::SeqCst) >= budget {
                    drop(client);
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let sent = sent.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > budget {
                                return;
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        Self { endpoint, task }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A small application in `ns` (YAML for [`kubectl_apply`]): ConfigMap `settings`, Secret
/// `token`, ServiceAccount, Role and RoleBinding `app`, Deployment and Service `web`.
pub fn small_app(ns: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{mode: production}}
---
apiVersion: v1
kind: Secret
metadata: {{name: token, namespace: {ns}}}
stringData: {{value: abc}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: app, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: app, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: app, namespace: {ns}}}
subjects: [{{kind: ServiceAccount, name: app, namespace: {ns}}}]
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: app}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{serviceAccountName: app, containers: [{{name: web, image: nginx}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
"#
    )
}
