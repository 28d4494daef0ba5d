//! `arca install`: the CRDs, a namespace, a service account, least-privilege RBAC, the
//! operator Deployment (hardened), a NetworkPolicy, a metrics Service, and optionally a
//! storage location with its credentials. `--dry-run -o yaml` prints them instead.
//! The Helm chart in deploy/ is generated from the same objects (`--helm-chart`).

mod chart;
mod manifests;
mod node_agent;
pub mod uninstall;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context as _;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    core::discovery::Scope,
    discovery::Discovery,
};
pub use manifests::{Options, manifests};

use crate::{Ctx, flags::key_values, output::Format};

#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// The operator's image.
    #[arg(long, default_value = manifests::DEFAULT_IMAGE)]
    pub image: String,
    /// Operator replicas. One works at a time (leader election on a Lease); the others take
    /// over within seconds when it stops.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub replicas: u32,
    /// Storage location to create: aws (any S3-compatible store). The filesystem provider is
    /// for an operator run outside the cluster, so the install refuses it.
    #[arg(long)]
    pub provider: Option<String>,
    /// The location's bucket.
    #[arg(long, requires = "provider")]
    pub bucket: Option<String>,
    /// A folder inside the bucket.
    #[arg(long, requires = "provider")]
    pub prefix: Option<String>,
    /// The location's config: `region=eu-west-1,s3Url=https://minio:9000,s3ForcePathStyle=true`.
    #[arg(long, value_parser = key_values, requires = "provider")]
    pub backup_location_config: Option<BTreeMap<String, String>>,
    /// An AWS credentials file for the location, stored in Secret `cloud-credentials`.
    #[arg(long, requires = "provider")]
    pub secret_file: Option<PathBuf>,
    /// Also install the node agent (a DaemonSet in `<namespace>-node-agent`), which backs
    /// up and restores pod volume data.
    #[arg(long)]
    pub use_node_agent: bool,
    /// kubelet's root folder on the nodes, where the node agent finds pods' volumes
    /// (`<it>/pods`). k0s, MicroK8s, RKE and others move it from the default.
    #[arg(long, default_value = manifests::DEFAULT_KUBELET_ROOT_DIR)]
    pub kubelet_root_dir: String,
    /// Node labels the operator's pods must match: `key=value,key2=value2`.
    #[arg(long, value_parser = key_values)]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// A taint the operator's pods tolerate: `key[=value]:Effect` (repeatable). The node
    /// agent tolerates every taint already: it must run wherever pods do.
    #[arg(long = "toleration", value_parser = manifests::toleration)]
    pub tolerations: Vec<serde_json::Value>,
    /// The ServiceAccount a tenant's Backup or Restore acts as in its namespace when its spec
    /// names none (`arca server --default-service-account`).
    #[arg(long, default_value = "arca", value_parser = crate::server::account_name)]
    pub default_service_account: String,
    /// Storage that locations in tenants' namespaces may use: `https://host[:port]` or
    /// `https://host[:port]/bucket` (repeatable). Default none: tenants use the operator's
    /// location. The operator's egress is opened to their ports.
    #[arg(long, value_parser = tenant_storage)]
    pub tenant_storage: Vec<String>,
    /// Print the objects (with -o yaml or -o json) instead of applying them.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the Helm chart (templates generated from these objects) to this folder.
    #[arg(long, hide = true)]
    pub helm_chart: Option<PathBuf>,
}

/// A `--tenant-storage` entry, checked as the server will read it, kept as written.
fn tenant_storage(text: &str) -> Result<String, String> {
    text.parse::<arca_runtime::tenant_storage::AllowedStorage>()?;
    Ok(text.trim_end_matches('/').to_string())
}

pub async fn run(ctx: &Ctx, args: InstallArgs) -> anyhow::Result<()> {
    let credentials = match &args.secret_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--secret-file: reading {}", path.display()))?,
        ),
        None => None,
    };
    if let Some(provider) = &args.provider {
        match provider.as_str() {
            "aws" => {}
            "filesystem" => anyhow::bail!(
                "--provider filesystem: the operator's pod has a read-only root and no volume for backups, and a directory inside it would not outlive it; use aws (any S3-compatible store, MinIO included), or run `arca server` outside the cluster with a filesystem location"
            ),
            _ => anyhow::bail!(
                "--provider: {provider:?} is not a provider Arca has: aws (any S3-compatible store)"
            ),
        }
        if args.bucket.is_none() {
            anyhow::bail!("--bucket is required with --provider");
        }
    }
    let options = Options {
        namespace: ctx.namespace.clone(),
        image: args.image.clone(),
        replicas: args.replicas,
        provider: args.provider.clone(),
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        config: args.backup_location_config.clone().unwrap_or_default(),
        credentials,
        use_node_agent: args.use_node_agent,
        kubelet_root_dir: args.kubelet_root_dir.clone(),
        node_selector: args.node_selector.clone().unwrap_or_default(),
        tolerations: args.tolerations.clone(),
        default_service_account: args.default_service_account.clone(),
        tenant_storage: args.tenant_storage.clone(),
    };
    if !options.kubelet_root_dir.starts_with('/') {
        anyhow::bail!(
            "--kubelet-root-dir: {:?} is not an absolute path (kubelet's --root-dir, /var/lib/kubelet by default)",
            options.kubelet_root_dir
        );
    }
    if let Some(dir) = &args.helm_chart {
        return chart::write(dir);
    }
    let objects = manifests(&options)?;
    if args.dry_run {
        let format = if ctx.output == Format::Table {
            Format::Yaml
        } else {
            ctx.output
        };
        return print(format, &objects);
    }
    apply(&ctx.client().await?, &objects).await?;
    println!(
        "Arca is installed in namespace {}. `arca location get` shows whether the location is Available.",
        ctx.namespace
    );
    Ok(())
}

/// Prints objects as a YAML stream, or a JSON list.
pub fn print(format: Format, objects: &[serde_json::Value]) -> anyhow::Result<()> {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects})
            )?
        ),
        _ => {
            for object in objects {
                print!("---\n{}", serde_yaml::to_string(object)?);
            }
        }
    }
    Ok(())
}

/// Server-side applies every object (CRDs first, waited for), as field manager arca-install.
async fn apply(client: &Client, objects: &[serde_json::Value]) -> anyhow::Result<()> {
    let params = PatchParams::apply("arca-install").force();
    let (crds, rest): (Vec<_>, Vec<_>) = objects
        .iter()
        .partition(|o| o["kind"] == "CustomResourceDefinition");
    for crd in &crds {
        apply_one(client, None, crd, &params).await?;
    }
    let crd_api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let established = kube::runtime::wait::await_condition(
            crd_api.clone(),
            name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .with_context(|| format!("CRD {name} did not become Established"))??;
    }
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .context("reading the cluster's API")?;
    for object in rest {
        apply_one(client, Some(&discovery), object, &params).await?;
    }
    Ok(())
}

/// The API of `object`'s kind (namespaced where discovery says so).
fn api_of(
    client: &Client,
    discovery: Option<&Discovery>,
    object: &serde_json::Value,
) -> Api<DynamicObject> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, namespaced) = match discovery.and_then(|d| d.resolve_gvk(&gvk)) {
        Some((resource, caps)) => (resource, caps.scope == Scope::Namespaced),
        None => (ApiResource::from_gvk(&gvk), false),
    };
    match object["metadata"]["namespace"].as_str() {
        Some(ns) if namespaced => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

async fn apply_one(
    client: &Client,
    discovery: Option<&Discovery>,
    object: &serde_json::Value,
    params: &PatchParams,
) -> anyhow::Result<()> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api_of(client, discovery, object)
        .patch(name, params, &Patch::Apply(object))
        .await
        .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}
