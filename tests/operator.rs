//! Running the operator for a test: in-process (confined to the test's namespace), or as
//! the real `arca server` process when a test kills it.

use std::{path::PathBuf, process::Stdio, time::Duration};

use arca_api::{Backup, BackupPhase, BackupStorageLocation, Restore, RestorePhase};
use arca_engine::{backup::BackupSettings, restore::RestoreSettings};
use arca_operator::Settings;
use kube::{Api, Client, api::PostParams};
use tokio::sync::oneshot;

use crate::{TestEnv, eventually};

/// Settings of a test operator handling only `namespace`.
pub fn settings(namespace: &str) -> Settings {
    Settings {
        namespace: namespace.into(),
        default_backup_ttl: Duration::from_secs(720 * 3600),
        backup: BackupSettings::default(),
        restore: RestoreSettings {
            wait_timeout: Duration::from_secs(120),
            ..RestoreSettings::default()
        },
        max_concurrent_backups: 2,
        max_concurrent_restores: 2,
        validation_frequency: Duration::from_secs(5),
        watch_namespace: Some(namespace.into()),
        leader_election: None,
        gc_frequency: Duration::from_secs(2),
        backup_sync_period: Duration::from_secs(2),
        fs_backup_timeout: Duration::from_secs(300),
        restore_helper_image: None,
        default_service_account: "arca".into(),
        tenant_storage: Vec::new(),
        scratch_dir: std::env::temp_dir().join("arca-scratch"),
        scratch_bytes: 256 * 1024 * 1024,
    }
}

/// The operator, running in this test's process on this test's runtime.
#[derive(Debug)]
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Logs of in-process operators go to `<environment>/logs/e2e-operators.log`.
fn init_logs(env: &TestEnv) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let path = env.env.dir.join("logs/e2e-operators.log");
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "info,kube=warn,aws=warn",
                ))
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .try_init();
        }
    });
}

impl Operator {
    pub async fn start(env: &TestEnv, settings: Settings) -> Self {
        Self::start_serving(env, settings, None).await
    }

    /// Also serves `/metrics` (and the probes) on `metrics`.
    pub async fn start_serving(
        env: &TestEnv,
        settings: Settings,
        metrics: Option<std::net::SocketAddr>,
    ) -> Self {
        let client = env.client().await.expect("client");
        crate::install_crds(&client)
            .await
            .expect("Arca's CRDs installed");
        Self::start_as(env, client, settings, metrics)
    }

    /// Runs with `client`'s identity (a ServiceAccount's, say); the CRDs must be there.
    pub fn start_as(
        env: &TestEnv,
        client: Client,
        settings: Settings,
        metrics: Option<std::net::SocketAddr>,
    ) -> Self {
        init_logs(env);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = arca_operator::run(client, settings, metrics, shutdown).await {
                panic!("the operator stopped: {e:#}");
            }
        });
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops it gracefully: work in flight finishes first.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A free loopback address for an operator's metrics.
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// GET `path` over plain HTTP/1.0: the body, or None while nothing listens.
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// The `arca` binary of this checkout (built by `make e2e` before the tests).
pub fn arca_binary() -> PathBuf {
    let path = arca_testenv::workspace_root().join("target/debug/arca");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --all-targets` (make e2e does)",
        path.display()
    );
    path
}

/// `arca` (the CLI) with `args`, against namespace `namespace` of the environment.
pub fn run_arca(env: &TestEnv, namespace: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(arca_binary())
        .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
        .args(["-n", namespace])
        .args(args)
        .output()
        .expect("arca runs")
}

/// The stdout of a CLI run that must have succeeded.
pub fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "arca failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `arca server` as a child process confined to `namespace`, its log in
/// `logs/arca-server-<log>.log` of the environment.
pub fn spawn_server(
    env: &TestEnv,
    log: &str,
    namespace: &str,
    extra: &[&str],
) -> tokio::process::Child {
    let log = std::fs::File::create(env.env.dir.join(format!("logs/arca-server-{log}.log")))
        .expect("log file");
    tokio::process::Command::new(arca_binary())
        .arg("server")
        .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
        .args(["--namespace", namespace, "--watch-namespace", namespace])
        .args(["--metrics-bind-address", "none", "--log-format", "text"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("arca server starts")
}

/// A credentials Secret (AWS shared-credentials file, as Velero's) and a default location
/// on the test bucket under `prefix`.
pub async fn s3_location(
    env: &TestEnv,
    client: &Client,
    namespace: &str,
    name: &str,
    prefix: &str,
) {
    create_location(
        &env.env.s3,
        client,
        namespace,
        name,
        prefix,
        &env.env.s3.endpoint,
        &env.env.s3.bucket,
        &env.env.s3.secret_access_key,
    )
    .await;
}

/// Like [`s3_location`], on the S3 server `s3` with any endpoint, bucket and secret key (to
/// make broken ones).
#[allow(clippy::too_many_arguments)]
pub async fn create_location(
    s3: &arca_testenv::S3Settings,
    client: &Client,
    namespace: &str,
    name: &str,
    prefix: &str,
    endpoint: &str,
    bucket: &str,
    secret_key: &str,
) {
    crate::install_crds(client)
        .await
        .expect("Arca's CRDs installed");

    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{name}-credentials")},
        "stringData": {"cloud": format!("[default]\naws_access_key_id={}\naws_secret_access_key={secret_key}\n", s3.access_key_id)}
    }))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("credentials secret");
    let location: BackupStorageLocation = serde_json::from_value(serde_json::json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocation",
        "metadata": {"name": name},
        "spec": {
            "provider": "aws",
            "default": true,
            "objectStorage": {"bucket": bucket, "prefix": prefix},
            "config": {"region": s3.region, "s3Url": endpoint, "s3ForcePathStyle": "true"},
            "credential": {"name": format!("{name}-credentials"), "key": "cloud"},
            "validationFrequency": "5s"
        }
    }))
    .expect("location");
    Api::<BackupStorageLocation>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &location)
        .await
        .expect("location created");
}

/// Waits until the backup reaches a terminal phase.
pub async fn backup_done(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Backup {
    let api: Api<Backup> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("backup {name} to finish"), timeout, || async {
        let b = api.get(name).await.ok()?;
        b.status.as_ref()?.phase?.is_terminal().then_some(b)
    })
    .await
}

/// Waits until the storage sync made Backup `name` and wrote its status (the sync creates the
/// object, then its status: the two arrive one after the other).
pub async fn synced_backup(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Backup {
    let api: Api<Backup> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("backup {name} synced with its status"),
        timeout,
        || async {
            let b = api.get_opt(name).await.ok()??;
            b.status.as_ref()?.phase?;
            Some(b)
        },
    )
    .await
}

/// Waits until the restore reaches a terminal phase.
pub async fn restore_done(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Restore {
    let api: Api<Restore> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("restore {name} to finish"), timeout, || async {
        let r = api.get(name).await.ok()?;
        r.status.as_ref()?.phase?.is_terminal().then_some(r)
    })
    .await
}

pub fn phase_of_backup(b: &Backup) -> BackupPhase {
    b.status.as_ref().and_then(|s| s.phase).unwrap_or_default()
}

pub fn phase_of_restore(r: &Restore) -> RestorePhase {
    r.status.as_ref().and_then(|s| s.phase).unwrap_or_default()
}
