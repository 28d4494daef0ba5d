//! Real Velero writes a backup; Arca's Velero reader (crates/velero) reads it back.
//!
//! Velero v1.18.3 and velero-plugin-for-aws (built by hack/testenv/build.sh) run out of
//! cluster against a cluster of this test's own: Velero's CRDs (whose `backups`,
//! `restores`, `schedules` and `bsl` names collide with Arca's in kubectl) never reach the
//! shared environment the other tests use. The backup goes to that cluster's S3 server
//! (versitygw), under a prefix; the reader lists it and reads every item from the same
//! bucket, which it leaves byte for byte as it was.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use arca_e2e::{TestEnv, apply_fixture, kubectl, kubectl_apply, normalize, snapshot};
use arca_testenv::Environment;
use arca_velero::{BackupPhase, Entry, FolderLayout, VeleroLocation};
use sha2::{Digest, Sha256};

/// The namespaced types of the fixture compared item by item (and its widgets).
pub(super) const TYPES: &str = "deployments,statefulsets,services,ingresses,networkpolicies,horizontalpodautoscalers,cronjobs,poddisruptionbudgets,limitranges,resourcequotas,configmaps,secrets,serviceaccounts,roles,rolebindings,persistentvolumeclaims";

/// Velero's own namespace in its cluster.
pub(super) const VELERO_NS: &str = "velero";

/// The phases a Velero Backup or Restore ends in.
const FINISHED: &[&str] = &["Completed", "PartiallyFailed", "Failed", "FailedValidation"];

/// The cluster of this test, stopped (by pid, `Environment::down`) when dropped.
pub(super) struct VeleroCluster(Environment);

impl Drop for VeleroCluster {
    fn drop(&mut self) {
        if std::env::var_os("ARCA_TESTENV_KEEP").is_none() {
            let _ = Environment::down(&self.0.name);
        }
    }
}

/// `velero server` running out of cluster, in a process group of its own (it starts its
/// plugins as child processes): stopped by that group's id, never by name.
pub(super) struct VeleroServer {
    child: Option<std::process::Child>,
    log: PathBuf,
    /// Held while the server runs (released after it is stopped, fields drop after `Drop`).
    _port: MetricsPortLock,
}

/// Velero's controller-runtime manager always binds its metrics server to `:8080` (Velero
/// v1.18.3 sets no `Metrics` option and has no flag for it), so two `velero server`s on one
/// machine cannot run at once: the second exits "address already in use". This exclusive lock
/// on a file in the system's temporary folder serialises them across tests and test processes.
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
    pub(super) async fn stop(mut self) {
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
pub(super) struct Velero {
    pub(super) server: VeleroServer,
    /// The `velero` binary (server and CLI).
    pub(super) binary: PathBuf,
    /// The prefix of the cluster's bucket Velero's location writes under.
    pub(super) prefix: String,
    /// Last: the cluster goes down after the server stopped.
    pub(super) cluster: VeleroCluster,
}

impl VeleroCluster {
    /// Brings up cluster `<tag>-<suffix>`.
    pub(super) async fn up(tag: &str, suffix: &str) -> Self {
        Self(
            Environment::up(&format!("{tag}-{suffix}"))
                .await
                .expect("the Velero test cluster starts"),
        )
    }

    /// The cluster, as the e2e helpers take it.
    pub(super) fn env(&self) -> TestEnv {
        TestEnv {
            env: self.0.clone(),
        }
    }
}

impl Velero {
    /// Starts Velero in `cluster` (its location under prefix `velero-<suffix>`). Velero
    /// learns the cluster's resources when it starts: create CRDs whose objects it must back
    /// up first.
    pub(super) async fn start(cluster: VeleroCluster, suffix: &str) -> Self {
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
    pub(super) fn env(&self) -> TestEnv {
        self.cluster.env()
    }

    /// `velero ARGS -n velero` (the CLI, as a user runs it): its stdout; fails the test with
    /// its stderr unless it succeeds.
    pub(super) fn cli(&self, args: &[&str]) -> String {
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
    pub(super) async fn back_up_namespace_and_stop(
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
    pub(super) async fn completed(&mut self, resource: &str, name: &str, timeout: Duration) {
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

/// Every object of the bucket under `prefix`, by key, as the sha256 of its content.
pub(super) async fn bucket_state(store: &dyn arca_store::ObjectStore) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for object in store.list("").await.expect("bucket listed") {
        let bytes = store.get(&object.key).await.expect("object read");
        state.insert(object.key, hex::encode(Sha256::digest(&bytes)));
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arca_reads_every_item_of_a_backup_real_velero_made() {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let cluster = VeleroCluster::up("velero", &suffix).await;
    let env = cluster.env();

    // The application: a realistic namespace, with a CRD and its objects (before Velero
    // starts, so that it knows the CRD).
    let app = format!("shop-{suffix}");
    let fixture = include_str!("fixtures/app.yaml")
        .replace("NS", &app)
        .replace("OTHER", &format!("other-{suffix}"))
        .replace("SUFFIX", &format!("t{suffix}"));
    apply_fixture(&env, &fixture, &["Widget"]);
    let widgets = format!("widgets.t{suffix}.example.com");
    let velero = Velero::start(cluster, &suffix).await;

    // Velero's backup of the namespace; then Velero stops, so nothing writes to the bucket
    // while it is read.
    let backup = format!("shop-{suffix}");
    let (prefix, cluster) = velero.back_up_namespace_and_stop(&backup, &app).await;

    // What the cluster holds now (the backup saw the same: nothing changed it since).
    let mut expected = snapshot(&env, Some(&app), &format!("{TYPES},{widgets}"));
    assert!(
        expected.len() >= 25,
        "the fixture made {} objects",
        expected.len()
    );
    let crd_now: serde_json::Value =
        serde_json::from_str(&kubectl(&env, &["get", "crd", &widgets, "-o", "json"]))
            .expect("the CRD as JSON");

    // Arca's reader, on the same bucket and prefix.
    let store = arca_e2e::store(&env, &prefix).await;
    let before = bucket_state(store.as_ref()).await;
    let location = VeleroLocation::new(store.clone());
    let folders = location.list_backups().await.expect("backups listed");
    assert_eq!(folders.len(), 1, "{folders:?}");
    assert_eq!(folders[0].name, backup);
    assert!(
        matches!(
            folders[0].layout,
            FolderLayout::Velero {
                tarball_bytes: Some(_),
                pod_volume_backups: true,
                resource_list: true
            }
        ),
        "{:?}",
        folders[0]
    );

    let meta = location.backup(&backup).await.expect("velero-backup.json");
    assert_eq!(meta.phase, BackupPhase::Completed);
    assert_eq!(meta.format_version.as_deref(), Some("1.1.0"));
    meta.check_format().expect("a format Arca reads");
    assert_eq!(meta.included_namespaces, vec![app.clone()]);
    assert_eq!(meta.storage_location.as_deref(), Some("default"));
    assert_eq!(meta.namespace.as_deref(), Some(VELERO_NS));
    assert_eq!(meta.ttl.as_deref(), Some("24h0m0s"));
    let (start, end, expiry) = (
        meta.start_timestamp.expect("start"),
        meta.completion_timestamp.expect("completion"),
        meta.expiration.expect("expiration"),
    );
    assert!(start <= end && end < expiry, "{start} {end} {expiry}");

    let mut items = BTreeMap::new();
    let mut stream = location.items(&backup).await.expect("tarball opened");
    while let Some(entry) = stream.next().await.expect("the tarball reads whole") {
        match entry {
            Entry::Item(item) => {
                let key = (
                    item.group_resource(),
                    item.namespace.clone(),
                    item.name.clone(),
                );
                let json: serde_json::Value =
                    serde_json::from_slice(&item.json).expect("items are JSON");
                let sha = item.index_entry().sha256;
                assert_eq!(sha, hex::encode(Sha256::digest(&item.json)));
                assert!(items.insert(key, (item.kind.clone(), json)).is_none());
            }
            Entry::Refused(refused) => panic!("an item of Velero's was refused: {refused:?}"),
        }
    }
    let summary = stream.summary().expect("summary").clone();
    assert_eq!(summary.format_version, "1.1.0");
    assert_eq!(summary.items, items.len() as u64);
    assert_eq!(summary.refused, 0);
    assert_eq!(
        summary.legacy_copies, summary.items,
        "each item has its legacy copy beside the preferred one"
    );
    assert_eq!(summary.ignored, 0, "{:?}", summary.ignored_names);
    eprintln!(
        "velero backup {backup}: {} items read ({} legacy copies, {} at other versions), {} bytes of gzip, {} decompressed",
        summary.items,
        summary.legacy_copies,
        summary.other_version_copies,
        summary.compressed_bytes,
        summary.decompressed_bytes
    );

    // Every object of the namespace is there, identical but for what the server sets.
    let mut found = 0;
    for (key, object) in std::mem::take(&mut expected) {
        let (kind, name) = key.split_once('/').expect("kind/name");
        let item = items.iter().find(|((_, ns, n), (k, _))| {
            ns.as_deref() == Some(app.as_str()) && n == name && k == kind
        });
        let Some((_, (_, json))) = item else {
            panic!("{key} of namespace {app} is not in Velero's backup as Arca reads it")
        };
        assert_eq!(normalize(json.clone()), object, "{key} differs");
        found += 1;
    }
    assert!(found >= 25);
    let ns_item = items
        .get(&("namespaces".to_string(), None, app.clone()))
        .expect("the namespace comes along");
    assert_eq!(ns_item.0, "Namespace");
    let crd_item = items
        .get(&(
            "customresourcedefinitions.apiextensions.k8s.io".to_string(),
            None,
            widgets.clone(),
        ))
        .expect("the CRD of the widgets comes along");
    assert_eq!(crd_item.1["spec"]["names"], crd_now["spec"]["names"]);
    assert_eq!(crd_item.1["spec"]["versions"], crd_now["spec"]["versions"]);

    // The side files: no file-level volume data; the resource list names each item read.
    let volumes = location
        .pod_volume_backups(&backup)
        .await
        .expect("pod volume backups read")
        .expect("Velero writes the list, empty or not");
    assert!(volumes.is_empty(), "{volumes:?}");
    let list = location
        .resource_list(&backup)
        .await
        .expect("resource list read")
        .expect("Velero writes the resource list");
    assert_eq!(list.len(), items.len(), "{list:?}");
    for entry in &list.entries {
        for (ns, name) in &entry.items {
            assert!(
                items.iter().any(|((_, n_ns, n_name), (kind, _))| n_ns == ns
                    && n_name == name
                    && kind == &entry.kind),
                "{}/{} {ns:?}/{name} of the resource list was not read",
                entry.version,
                entry.kind
            );
        }
    }

    // Read-only: the bucket is byte for byte what Velero left.
    assert_eq!(bucket_state(store.as_ref()).await, before);
    drop(cluster);
}
