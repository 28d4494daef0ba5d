//! `arca agent`: the node agent (a DaemonSet), which moves pod volume data on its node.

use arca_agent::AgentSettings;
use arca_api::Duration as GoDuration;

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// This node's name (the DaemonSet passes `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// kubelet's pods folder as mounted in the agent: `<dir>/<pod uid>/volumes/...`.
    #[arg(long, default_value = "/host_pods")]
    pub host_pods_dir: std::path::PathBuf,
    /// The operator's namespace, where the PodVolumeBackups and PodVolumeRestores are.
    #[arg(long, env = "POD_NAMESPACE")]
    pub work_namespace: Option<String>,
    /// Volumes moved at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: u16,
    /// How long a restore waits for kubelet to create the new pod's volume folder.
    #[arg(long, default_value = "10m")]
    pub mount_wait: GoDuration,
    /// `text`, `json`, or `auto` (json inside a cluster).
    #[arg(long, default_value = "auto")]
    pub log_format: String,
}

pub async fn run(
    kube: crate::kube_args::KubeArgs,
    namespace: String,
    args: AgentArgs,
) -> anyhow::Result<()> {
    crate::logging::init(&args.log_format);
    if args.node_name.trim().is_empty() {
        anyhow::bail!("--node-name is empty: give the name of the node this agent runs on");
    }
    let client = kube.client().await?;
    let settings = AgentSettings {
        node_name: args.node_name.clone(),
        host_pods_dir: args.host_pods_dir.clone(),
        namespace: args.work_namespace.clone().unwrap_or(namespace),
        concurrency: args.concurrency.max(1),
        mount_wait: args.mount_wait.as_std(),
    };
    arca_agent::run(client, settings, crate::server::shutdown_signal()).await
}

/// The environment variable of glibc's fixed mmap threshold, and the agent's value.
///
/// glibc raises its mmap threshold as large buffers are freed (up to 32 MiB); after that the
/// data mover's pack and chunk buffers come from heap arenas that keep their pages, and a
/// 2 GiB backup peaked at 330-380 MiB. With a fixed 4 MiB threshold the big buffers are mapped
/// and returned when freed: 183 MiB at the same speed (docs/benchmarks.md).
pub const MMAP_THRESHOLD_ENV: &str = "MALLOC_MMAP_THRESHOLD_";
const MMAP_THRESHOLD: &str = "4194304";

/// glibc reads [`MMAP_THRESHOLD_ENV`] once, at process start: unless it is set (by the user,
/// or by this), the agent starts itself again with it. On failure it goes on as it is.
pub fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(MMAP_THRESHOLD_ENV).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(MMAP_THRESHOLD_ENV, MMAP_THRESHOLD)
        .exec();
    eprintln!("warning: could not restart with {MMAP_THRESHOLD_ENV} set ({error}); going on");
}
