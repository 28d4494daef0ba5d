//! Real Velero v1.18.3 as a test component: its server out of cluster against a cluster of
//! the test's own, and, on a cluster with a real node, its node agent as a DaemonSet of an
//! image built here from the same binary (`hack/testenv/velero-image.sh`).
//!
//! Velero and velero-plugin-for-aws are built by hack/testenv/build.sh. Velero's CRDs (whose
//! `backups`, `restores`, `schedules` and `bsl` names collide with Arca's in kubectl) never
//! reach the shared environment the other tests use. Velero writes to that cluster's S3
//! server (versitygw), under a prefix of its own.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::{TestEnv, kubectl, kubectl_apply};
use arca_testenv::Environment;
use sha2::{Digest, Sha256};

/// Velero's own namespace in its cluster.
pub const VELERO_NS: &str = "velero";

/// The password of the repositories Velero makes when its Secret names none.
pub use arca_engine::protocol::VELERO_DEFAULT_PASSWORD;

/// The phases a Velero Backup or Restore ends in.
const FINISHED: &[&str] = &["Completed", "PartiallyFailed", "Failed", "FailedValidation"];

/// The cluster of this test, stopped (by pid, `Environment::down`) when dropped.
#[derive(Debug)]
pub struct VeleroCluster(Environment);

impl Drop for VeleroCluster {
    fn drop(&mut self) {
        if std::env::var_os("ARCA_TESTENV_KEEP").is_none() {
            let _ = Environment::down(&self.0.name);
        }
    }
}

/// `velero server` running out of cluster, in a process group of its own (it starts its
/// plugins as child processes): stopped by that group's id, never by name.
#[derive(Debug)]
pub struct VeleroServer {
    child: Option<std::process::Child>,
    log: PathBuf,
    /// Held while the server runs (released after it is stopped, fields drop after `Drop`).
    _port: MetricsPortLock,
}

/// Velero's controller-runtime manager always binds its metrics server to `:8080` (Velero
/// v1.18.3 sets no `Metrics` option and has no flag for it), so two `velero server`s on one
/// machine cannot run at once: the second exits "address already in use". This exclusive lock
/// on a file in the system's temporary folder serialises them across tests and test processes.
#[derive(Debug)]
struct MetricsPortLock {
    _file: std::fs::File,
}

impl MetricsPortLock {
    /// Waits for the lock (another test's Velero may hold it for minutes), then for `:8080`
    /// to be free: a process outside the tests holding it fails the test, naming the port.
    async fn acquire() -> Self {
        let path = std::env::temp_dir().join("arca-e2e-velero-port-8080.lock");
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .expect("velero's port lock file opens");
            file.lock().expect("velero's port lock is taken");
            file
        })
        .await
        .expect("velero's port lock");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpListener::bind("0.0.0.0:8080").is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "port 8080 is in use by a process outside the tests: Velero's metrics server \
                 binds it and cannot be moved; free it (`ss -ltnp 'sport = :8080'`)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self { _file: file }
    }
}

impl VeleroServer {
    fn start(env: &Environment, velero: &Path, plugins: &Path, port: MetricsPortLock) -> Self {
        let log = env.dir.join("logs/velero-server.log");
        let out = std::fs::File::create(&log).expect("velero log file");
        let err = out.try_clone().expect("velero log file");
        let tmp = env.dir.join("velero-tmp");
        let home = env.dir.join("velero-home");
        for dir in [&tmp, &home] {
            std::fs::create_dir_all(dir).expect("velero folders");
        }
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
        };
        let mut cmd = std::process::Command::new(velero);
        cmd.arg("server")
            .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
            .args(["--namespace", VELERO_NS])
            .arg(format!("--plugin-dir={}", plugins.display()))
            .arg(format!("--metrics-address={}", free()))
            .arg(format!("--profiler-address={}", free()))
            .args(["--log-format", "text", "--store-validation-frequency", "5s"])
            // Velero writes the BSL's credentials Secret to $TMPDIR/credentials: keep it in
            // the environment's folder. No instance metadata, no proxy: only loopback.
            .env("TMPDIR", &tmp)
            .env("HOME", &home)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(proxy);
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("velero server starts");
        Self {
            child: Some(child),
            log,
            _port: port,
        }
    }

    /// The last lines of the server's log, for failure messages.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Whether the server process has exited (and how).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM to the group, then SIGKILL to what is left after 20 s; waits for the server
    /// and checks that no process of its group is left.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id();
        signal_group(group, "TERM");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        signal_group(group, "KILL");
        let _ = child.wait();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while group_alive(group) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "processes of velero's group {group} are still running after SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for VeleroServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(child.id(), "KILL");
            let _ = child.wait();
        }
    }
}

/// Velero's node-agent DaemonSet, as rendered, on the test environment's real node: its
/// kubelet folder (not `/var/lib/kubelet`), its label and taint.
fn place_on_real_node(daemonset: &mut serde_json::Value, kubelet_root: &str) {
    let pod = &mut daemonset["spec"]["template"]["spec"];
    let volumes = pod["volumes"]
        .as_array_mut()
        .expect("the node agent's volumes");
    let mut moved = 0;
    for volume in volumes.iter_mut() {
        let folder = match volume["name"].as_str() {
            Some("host-pods") => "pods",
            Some("host-plugins") => "plugins",
            _ => continue,
        };
        volume["hostPath"]["path"] = format!("{kubelet_root}/{folder}").into();
        moved += 1;
    }
    assert_eq!(
        moved, 2,
        "velero install renders host-pods and host-plugins: {pod}"
    );
    pod["nodeSelector"] = serde_json::json!({"arca.dev/real-node": "true"});
    pod["tolerations"] = serde_json::json!([
        {"key": "arca.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ]);
}

/// Runs `hack/testenv/<script> ARGS` and gives the last line it printed; fails the test with
/// its stderr unless it succeeds.
fn script_output(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("bash")
        .arg(
            arca_testenv::workspace_root()
                .join("hack/testenv")
                .join(script),
        )
        .args(args)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "hack/testenv/{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `kill -SIGNAL -- -GROUP`: every process of the group this test made for velero.
fn signal_group(group: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
}

/// Whether any process is left in the process group `group`.
fn group_alive(group: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-s", "0", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Velero v1.18.3 against a cluster of the test's own: its CRDs (as `velero install` makes
/// them), its namespace, credentials, location `default` on the cluster's S3 server under
/// `prefix` (Available), and `velero server`.
#[derive(Debug)]
pub struct Velero {
    pub server: VeleroServer,
    /// The `velero` binary (server and CLI).
    pub binary: PathBuf,
    /// The prefix of the cluster's bucket Velero's location writes under.
    pub prefix: String,
    /// Last: the cluster goes down after the server stopped.
    pub cluster: VeleroCluster,
}

impl VeleroCluster {
    /// Brings up cluster `<tag>-<suffix>`.
    pub async fn up(tag: &str, suffix: &str) -> Self {
        Self(
            Environment::up(&format!("{tag}-{suffix}"))
                .await
                .expect("the Velero test cluster starts"),
        )
    }

    /// Brings up cluster `<tag>-<suffix>` with a real kubelet node beside the kwok node,
    /// for Velero's node agent.
    pub async fn up_with_real_node(tag: &str, suffix: &str) -> Self {
        let root = arca_testenv::testenv_root();
        Self(
            Environment::up_in(&root, &format!("{tag}-{suffix}"), true)
                .await
                .expect("the Velero test cluster with a real node starts"),
        )
    }

    /// The cluster, as the e2e helpers take it.
    pub fn env(&self) -> TestEnv {
        TestEnv {
            env: self.0.clone(),
        }
    }
}

impl Velero {
    /// Starts Velero in `cluster` (its location under prefix `velero-<suffix>`). Velero
    /// learns the cluster's resources when it starts: create CRDs whose objects it must back
    /// up first.
    pub async fn start(cluster: VeleroCluster, suffix: &str) -> Self {
        let env = TestEnv {
            env: cluster.0.clone(),
        };
        let velero = env.env.bin.join("velero");
        let plugins = env.env.bin.join("velero-plugins");
        assert!(
            velero.is_file() && plugins.join("velero-plugin-for-aws").is_file(),
            "velero or velero-plugins/velero-plugin-for-aws is missing from {}: run `make testenv-build` (hack/testenv/build.sh builds them from their Go modules)",
            env.env.bin.display()
        );

        // Velero's CRDs, as `velero install` makes them.
        let crds = std::process::Command::new(&velero)
            .args(["install", "--crds-only", "--dry-run", "-o", "yaml"])
            .output()
            .expect("velero install runs");
        assert!(
            crds.status.success(),
            "velero install --crds-only --dry-run: {}",
            String::from_utf8_lossy(&crds.stderr)
        );
        kubectl_apply(&env, &String::from_utf8_lossy(&crds.stdout));
        kubectl(
            &env,
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "-l",
                "component=velero",
                "--timeout=60s",
            ],
        );

        // Velero's side: its namespace, credentials (an AWS shared-credentials file, as for
        // Arca), a location on the cluster's S3 server under a prefix, the `velero`
        // Deployment an out-of-cluster server needs to find (no replicas).
        let s3 = &env.env.s3;
        let prefix = format!("velero-{suffix}");
        kubectl(&env, &["create", "namespace", VELERO_NS]);
        kubectl_apply(
            &env,
            &format!(
                r#"
apiVersion: v1
kind: Secret
metadata: {{name: cloud-credentials, namespace: {VELERO_NS}}}
stringData:
  cloud: |
    [default]
    aws_access_key_id={key}
    aws_secret_access_key={secret}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: velero, namespace: {VELERO_NS}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{deploy: velero}}}}
  template:
    metadata: {{labels: {{deploy: velero}}}}
    spec: {{containers: [{{name: velero, image: "velero/velero:v1.18.3"}}]}}
---
apiVersion: velero.io/v1
kind: BackupStorageLocation
metadata: {{name: default, namespace: {VELERO_NS}}}
spec:
  provider: aws
  default: true
  objectStorage: {{bucket: {bucket}, prefix: {prefix}}}
  config: {{region: {region}, s3ForcePathStyle: "true", s3Url: "{endpoint}"}}
  credential: {{name: cloud-credentials, key: cloud}}
"#,
                key = s3.access_key_id,
                secret = s3.secret_access_key,
                bucket = s3.bucket,
                region = s3.region,
                endpoint = s3.endpoint,
            ),
        );

        let port = MetricsPortLock::acquire().await;
        let mut server = VeleroServer::start(&env.env, &velero, &plugins, port);
        let location_phase = || {
            kubectl(
                &env,
                &[
                    "get",
                    "backupstoragelocations.velero.io",
                    "default",
                    "-n",
                    VELERO_NS,
                    "-o",
                    "jsonpath={.status.phase}",
                ],
            )
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while location_phase() != "Available" {
            if let Some(status) = server.exited() {
                panic!("velero server exited ({status}):\n{}", server.tail());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Velero's location is not Available after 120 s (phase {:?}):\n{}",
                location_phase(),
                server.tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Self {
            server,
            binary: velero,
            prefix,
            cluster,
        }
    }

    /// The cluster, as the e2e helpers take it.
    pub fn env(&self) -> TestEnv {
        self.cluster.env()
    }

    /// Velero's node agent on the cluster's real node, as `velero install --use-node-agent`
    /// renders it (its ServiceAccount, ClusterRoleBinding and DaemonSet), with the image of
    /// `hack/testenv/velero-image.sh` imported into the node's containerd. Only what the test
    /// environment needs is changed: the node's kubelet folder for `host-pods` and
    /// `host-plugins`, and the real node's label and taint. Waits until the agent runs.
    pub async fn start_node_agent(&self) {
        let env = self.env();
        let node = env
            .env
            .real_node
            .as_ref()
            .expect("Velero's node agent needs a real node: VeleroCluster::up_with_real_node");
        let archive = script_output("velero-image.sh", &[]);
        script_output("load.sh", &[&env.env.dir.display().to_string(), &archive]);

        let secret_file = env.env.dir.join("velero-install-credentials");
        std::fs::write(&secret_file, "[default]\n").expect("credentials file written");
        let s3 = &env.env.s3;
        let rendered = std::process::Command::new(&self.binary)
            .args(["install", "--dry-run", "-o", "json", "--use-node-agent"])
            .args(["--provider", "aws", "--use-volume-snapshots=false"])
            .args(["--plugins", "velero/velero-plugin-for-aws:v1.14.3"])
            .args(["--bucket", &s3.bucket, "--prefix", &self.prefix])
            .arg(format!("--secret-file={}", secret_file.display()))
            .arg(format!("--backup-location-config=region={}", s3.region))
            .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
            .args(["--namespace", VELERO_NS])
            .env("HOME", env.env.dir.join("velero-home"))
            .output()
            .expect("velero install runs");
        assert!(
            rendered.status.success(),
            "velero install --dry-run: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let list: serde_json::Value =
            serde_json::from_slice(&rendered.stdout).expect("velero install writes a JSON List");
        let kubelet_root = node.kubelet_root_dir.display().to_string();
        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
            match item["kind"].as_str().unwrap_or_default() {
                "ServiceAccount" | "ClusterRoleBinding" => {}
                "DaemonSet" => place_on_real_node(&mut item, &kubelet_root),
                _ => continue,
            }
            kubectl_apply(&env, &item.to_string());
        }
        kubectl(
            &env,
            &[
                "rollout",
                "status",
                "daemonset/node-agent",
                "-n",
                VELERO_NS,
                "--timeout=180s",
            ],
        );
    }

    /// `velero ARGS -n velero` (the CLI, as a user runs it): its stdout; fails the test with
    /// its stderr unless it succeeds.
    pub fn cli(&self, args: &[&str]) -> String {
        let env = &self.cluster.0;
        let out = std::process::Command::new(&self.binary)
            .args(args)
            .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
            .args(["--namespace", VELERO_NS])
            .env("HOME", env.dir.join("velero-home"))
            .output()
            .expect("velero runs");
        assert!(
            out.status.success(),
            "velero {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Velero Backup `name` of namespace `namespace` (no volume snapshots, ttl 24h, the
    /// `default` location), waited for until Completed; then the server is stopped, so
    /// nothing writes to the bucket while a test reads it. Gives the location's prefix and
    /// the cluster (which goes down when dropped).
    pub async fn back_up_namespace_and_stop(
        mut self,
        name: &str,
        namespace: &str,
    ) -> (String, VeleroCluster) {
        kubectl_apply(
            &self.env(),
            &format!(
                r#"
apiVersion: velero.io/v1
kind: Backup
metadata: {{name: {name}, namespace: {VELERO_NS}}}
spec: {{includedNamespaces: [{namespace}], snapshotVolumes: false, storageLocation: default, ttl: 24h0m0s}}
"#
            ),
        );
        self.completed("backups", name, Duration::from_secs(180))
            .await;
        let Velero {
            server,
            prefix,
            cluster,
            ..
        } = self;
        server.stop().await;
        (prefix, cluster)
    }

    /// Waits (within `timeout`) until Velero's `resource` (`backups`, `restores`) `name`
    /// ends, and insists it ended Completed, showing it and the server's log otherwise.
    pub async fn completed(&mut self, resource: &str, name: &str, timeout: Duration) {
        let env = self.env();
        let resource = format!("{resource}.velero.io");
        let get = |output: &str| {
            kubectl(
                &env,
                &["get", &resource, name, "-n", VELERO_NS, "-o", output],
            )
        };
        let phase = || get("jsonpath={.status.phase}");
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = phase();
        while !FINISHED.contains(&last.as_str()) {
            if let Some(status) = self.server.exited() {
                panic!("velero server exited ({status}):\n{}", self.server.tail());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Velero's {resource} {name} is {last:?} after {timeout:?}:\n{}",
                self.server.tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            last = phase();
        }
        assert_eq!(
            last,
            "Completed",
            "Velero's {resource} {name} ended {last}: {}\n{}",
            get("yaml"),
            self.server.tail()
        );
    }
}

/// A second cluster, without Velero, whose Arca reads Velero's bucket and prefix.
#[derive(Debug)]
pub struct ArcaReader {
    /// The operator (in `arca-system`), stopped by the test.
    pub operator: crate::operator::Operator,
    /// The operator's scratch folder (where restores of Velero's backups transcode).
    pub scratch: PathBuf,
    /// The cluster; it goes down when dropped (after the operator stopped).
    pub cluster: VeleroCluster,
}

impl ArcaReader {
    /// Cluster `<tag>-<suffix>` with Arca's operator in `arca-system` and a ReadOnly location
    /// `from-velero` on `source`'s bucket under Velero's `prefix`; returned once Velero's
    /// backup `backup` is synced there.
    pub async fn start(
        source: &TestEnv,
        tag: &str,
        suffix: &str,
        prefix: &str,
        backup: &str,
    ) -> Self {
        let cluster = VeleroCluster::up(tag, suffix).await;
        let env = cluster.env();
        let client = env.client().await.expect("client");
        kubectl(&env, &["create", "namespace", "arca-system"]);
        let s3 = &source.env.s3;
        crate::operator::create_location(
            s3,
            &client,
            "arca-system",
            "from-velero",
            prefix,
            &s3.endpoint,
            &s3.bucket,
            &s3.secret_access_key,
        )
        .await;
        kubectl(
            &env,
            &[
                "patch",
                "absl",
                "from-velero",
                "-n",
                "arca-system",
                "--type=merge",
                "-p",
                r#"{"spec":{"accessMode":"ReadOnly"}}"#,
            ],
        );
        let settings = crate::operator::settings("arca-system");
        let scratch = settings.scratch_dir.clone();
        let operator = crate::operator::Operator::start(&env, settings).await;
        crate::operator::synced_backup(&client, "arca-system", backup, Duration::from_secs(60))
            .await;
        Self {
            operator,
            scratch,
            cluster,
        }
    }

    /// The cluster, as the e2e helpers take it.
    pub fn env(&self) -> TestEnv {
        self.cluster.env()
    }
}

/// The message of the `NotRestored` Event on Restore `restore` that contains `naming`.
pub async fn not_restored_event(
    events: &kube::Api<k8s_openapi::api::core::v1::Event>,
    restore: &str,
    naming: &str,
) -> String {
    crate::eventually(
        &format!("a NotRestored Event naming {naming}"),
        Duration::from_secs(30),
        || async {
            let params = kube::api::ListParams::default()
                .fields(&format!("involvedObject.name={restore},reason=NotRestored"));
            events
                .list(&params)
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|e| e.message)
                .find(|m| m.contains(naming))
        },
    )
    .await
}

/// Every object of the bucket under `prefix`, by key, as the sha256 of its content.
pub async fn bucket_state(store: &dyn arca_store::ObjectStore) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for object in store.list("").await.expect("bucket listed") {
        let bytes = store.get(&object.key).await.expect("object read");
        state.insert(object.key, hex::encode(Sha256::digest(&bytes)));
    }
    state
}
