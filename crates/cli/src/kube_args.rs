//! `--kubeconfig` and `--context`, as kubectl takes them.

use std::path::PathBuf;

use anyhow::Context as _;
use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};

#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// Path of the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
}

impl KubeArgs {
    pub async fn client(&self) -> anyhow::Result<Client> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("using kubeconfig {}", path.display()))?
            }
            None if self.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .context("loading kubeconfig")?,
            None => Config::infer()
                .await
                .context("finding a cluster: set --kubeconfig or KUBECONFIG, or run in a pod")?,
        };
        Client::try_from(config).context("creating the Kubernetes client")
    }
}
