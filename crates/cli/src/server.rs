//! `arca server`: the operator.

use std::net::SocketAddr;

use anyhow::Context as _;
use arca_api::Duration as GoDuration;
use arca_engine::{backup::BackupSettings, restore::RestoreSettings};
use arca_operator::Settings;

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub kube: crate::kube_args::KubeArgs,
    /// The operator's namespace. Backups and Restores in other namespaces are tenants':
    /// confined to their own namespace, never cluster-scoped.
    #[arg(
        short = 'n',
        long,
        env = "POD_NAMESPACE",
        default_value = "arca-system"
    )]
    pub namespace: String,
    /// Handle only the Backups, Restores and locations of this namespace (as Velero does).
    /// Default: every namespace, so tenants can back up their own.
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// Where /metrics, /healthz and /readyz are served; `none` to serve nothing.
    #[arg(long, default_value = "0.0.0.0:8095")]
    pub metrics_bind_address: String,
    /// How long a Backup without `ttl` is kept.
    #[arg(long, default_value = "720h")]
    pub default_backup_ttl: GoDuration,
    /// How often storage locations are checked, unless they say otherwise.
    #[arg(long, default_value = "1m")]
    pub validation_frequency: GoDuration,
    /// How often expired backups are looked for (and deleted).
    #[arg(long, default_value = "1h")]
    pub garbage_collection_frequency: GoDuration,
    /// How often storage locations are synced into Backup objects, unless a location says
    /// otherwise; `0` turns it off.
    #[arg(long, default_value = "1m")]
    pub backup_sync_period: GoDuration,
    /// Backups run at once.
    #[arg(long, default_value_t = 2)]
    pub max_concurrent_backups: u16,
    /// Restores run at once.
    #[arg(long, default_value_t = 2)]
    pub max_concurrent_restores: u16,
    /// Resource lists a backup runs at once.
    #[arg(long, default_value_t = 8)]
    pub list_concurrency: usize,
    /// Items per list page (lowered automatically for big items).
    #[arg(long, default_value_t = 500)]
    pub page_size: u32,
    /// Items a restore writes at once within a tier.
    #[arg(long, default_value_t = 32)]
    pub restore_concurrency: usize,
    /// Hold a Lease (`arca-operator` in --namespace) so that of several replicas only one works.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Who this replica is, in the Lease (default: the pod's name, else the host's).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a backup or restore waits for the node agents to move its pod volumes.
    #[arg(long, default_value = "4h")]
    pub fs_backup_timeout: GoDuration,
    /// Arca's image, for the pods the operator makes: the init container added to restored
    /// pods whose volumes get data (it holds the pod's own containers until the node agent has
    /// written every volume), and the data mover's pods (`snapshotMoveData`). `arca install`
    /// sets it to the operator's own image; unset, restored pods get none and snapshot data
    /// is not moved.
    #[arg(long, env = "ARCA_RESTORE_HELPER_IMAGE")]
    pub restore_helper_image: Option<String>,
    /// The ServiceAccount a Backup or Restore outside --namespace acts as when its spec
    /// names none: Arca impersonates `system:serviceaccount:<its namespace>:<this>`, so the
    /// namespace's RBAC decides what a tenant's run may read, write and exec.
    #[arg(long, default_value = "arca", value_parser = account_name)]
    pub default_service_account: String,
    /// Storage a location in a tenant's namespace may use: `https://host[:port]` (any
    /// bucket) or `https://host[:port]/bucket`, matched against the location's `s3Url` (or
    /// AWS's regional endpoint) and bucket. Repeat it or separate with commas. Default: none,
    /// so tenants use the operator's location, under `tenants/<namespace>/`.
    #[arg(long, value_delimiter = ',')]
    pub tenant_storage: Vec<arca_runtime::tenant_storage::AllowedStorage>,
    /// Where a restore of a Velero backup rewrites the backup's items as Arca's archive
    /// before restoring them (one folder per restore, removed when it ends). Default: the
    /// temporary folder's `arca-scratch` (`/tmp`, the pod's emptyDir, when installed).
    #[arg(long, env = "ARCA_SCRATCH_DIR")]
    pub scratch_dir: Option<std::path::PathBuf>,
    /// The most bytes one such restore may write there (the rewritten items, compressed);
    /// a larger backup is refused, saying so. Keep it below the size of the volume holding
    /// --scratch-dir (`arca install` gives /tmp 1Gi).
    #[arg(long, default_value_t = 768 * 1024 * 1024)]
    pub scratch_bytes: u64,
    /// `text`, `json`, or `auto` (json inside a cluster).
    #[arg(long, default_value = "auto")]
    pub log_format: String,
}

/// A `--default-service-account` value.
pub fn account_name(text: &str) -> Result<String, String> {
    arca_operator::identity::check_account_name(text).map(|()| text.to_string())
}

pub fn settings(namespace: &str, args: &ServerArgs) -> Settings {
    Settings {
        namespace: namespace.to_string(),
        default_backup_ttl: args.default_backup_ttl.as_std(),
        backup: BackupSettings {
            list_concurrency: args.list_concurrency.max(1),
            page_size: args.page_size.clamp(10, 10_000),
        },
        restore: RestoreSettings {
            apply_concurrency: args.restore_concurrency.max(1),
            ..RestoreSettings::default()
        },
        max_concurrent_backups: args.max_concurrent_backups.max(1),
        max_concurrent_restores: args.max_concurrent_restores.max(1),
        validation_frequency: args.validation_frequency.as_std(),
        watch_namespace: args.watch_namespace.clone(),
        leader_election: args.leader_elect.then(|| {
            let identity = args.identity.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
            arca_operator::leader::LeaderElection::new(namespace, &identity)
        }),
        gc_frequency: args.garbage_collection_frequency.as_std(),
        backup_sync_period: args.backup_sync_period.as_std(),
        fs_backup_timeout: args.fs_backup_timeout.as_std(),
        restore_helper_image: args.restore_helper_image.clone().filter(|i| !i.is_empty()),
        default_service_account: args.default_service_account.clone(),
        tenant_storage: args.tenant_storage.clone(),
        scratch_dir: args
            .scratch_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("arca-scratch")),
        scratch_bytes: args.scratch_bytes,
    }
}

pub async fn run(
    kube: crate::kube_args::KubeArgs,
    namespace: String,
    args: ServerArgs,
) -> anyhow::Result<()> {
    crate::logging::init(&args.log_format);
    let client = kube.client().await?;
    let metrics_address: Option<SocketAddr> = match args.metrics_bind_address.as_str() {
        "none" | "" => None,
        address => Some(address.parse().with_context(|| {
            format!("--metrics-bind-address {address:?} is not an address like 0.0.0.0:8095")
        })?),
    };
    arca_operator::run(
        client,
        settings(&namespace, &args),
        metrics_address,
        shutdown_signal(),
    )
    .await
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("signal received; finishing work in flight (up to the pod's grace period)");
}
