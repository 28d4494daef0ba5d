//! `arca agent`: the node agent (a DaemonSet), which moves pod volume data on its node.

use arca_api::Duration as GoDuration;
use arca_operator::agent::AgentSettings;

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
    arca_operator::agent::run(client, settings, crate::server::shutdown_signal()).await
}
