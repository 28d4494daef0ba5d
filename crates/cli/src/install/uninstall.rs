//! `arca uninstall`: removes what `arca install` (or the chart) put in the cluster: the
//! operator and node agent, their RBAC, Services and NetworkPolicies, and the namespaces made
//! for them. Backups in the bucket are never touched: install Arca again (or point another
//! cluster at the bucket) and the storage sync brings them back. The CRDs, and with them every
//! Backup, Restore, Schedule and location object in the cluster, go only with `--crds`.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DeleteParams, DynamicObject},
    discovery::Discovery,
};

use arca_api::labels::RESTORE_FINALIZER;
use arca_engine::protocol::REPOSITORY_SECRET;

use super::manifests::{Options, manifests};
use crate::Ctx;

#[derive(Debug, Clone, clap::Args)]
pub struct UninstallArgs {
    /// Also delete Arca's CRDs: every Backup, Restore, Schedule and location object in the
    /// cluster goes with them (the backups' data in the bucket stays).
    #[arg(long)]
    pub crds: bool,
    /// Wait until the namespaces are gone.
    #[arg(long)]
    pub wait: bool,
}

/// The label `arca install` puts on the namespaces it makes: only those are deleted.
const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "arca");

pub async fn run(ctx: &Ctx, args: UninstallArgs) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let options = Options {
        namespace: ctx.namespace.clone(),
        use_node_agent: true,
        ..Options::default()
    };
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .context("reading the cluster's API")?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &ctx.namespace);
    if secrets.get_opt(REPOSITORY_SECRET).await?.is_some() {
        println!(
            "Secret {REPOSITORY_SECRET} (the password of the volume data in the bucket) goes with namespace {ns}. Keep a copy to read that data after a new install:\n  kubectl get secret -n {ns} {REPOSITORY_SECRET} -o yaml > {REPOSITORY_SECRET}.yaml",
            ns = ctx.namespace
        );
    }
    let mut removed_namespaces = Vec::new();
    // Workloads first (their pods finish work in flight), then the rest, namespaces last.
    let mut objects = manifests(&options)?;
    objects.retain(|o| args.crds || o["kind"] != "CustomResourceDefinition");
    objects.sort_by_key(|o| match o["kind"].as_str() {
        Some("Deployment" | "DaemonSet") => 0,
        Some("Namespace") => 2,
        Some("CustomResourceDefinition") => 3,
        _ => 1,
    });
    let mut released = false;
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        // With the operator gone, nothing would remove the Restores' finalizer, and their
        // namespaces (or the CRD) would never finish deleting: release them first.
        if !released && matches!(kind, "Namespace" | "CustomResourceDefinition") {
            release_restores(&client).await?;
            released = true;
        }
        if kind == "Namespace" {
            let ours = match namespaces.get_opt(name).await? {
                Some(ns) => {
                    ns.metadata.labels.unwrap_or_default().get(PART_OF.0)
                        == Some(&PART_OF.1.to_string())
                }
                None => continue,
            };
            if !ours {
                println!("Namespace {name} was not made by arca install: left in place.");
                continue;
            }
            removed_namespaces.push(name.to_string());
        }
        let api: Api<DynamicObject> = super::api_of(&client, Some(&discovery), object);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {kind} {name}")),
        }
    }
    if args.wait {
        for name in &removed_namespaces {
            let gone = kube::runtime::wait::await_condition(
                namespaces.clone(),
                name,
                kube::runtime::wait::conditions::is_deleted(""),
            );
            tokio::time::timeout(Duration::from_secs(300), gone)
                .await
                .with_context(|| format!("namespace {name} is still terminating after 5m"))??;
        }
    }
    println!(
        "Arca is uninstalled from namespace {}. Every backup in the bucket is kept: install Arca again (or point another cluster's location at the bucket) and they come back.{}",
        ctx.namespace,
        if args.crds {
            ""
        } else {
            " Arca's CRDs and objects (schedules, locations) are kept too: `arca uninstall --crds` removes them."
        }
    );
    Ok(())
}

/// Removes the operator's finalizer from every Restore (their files in the bucket stay).
async fn release_restores(client: &kube::Client) -> anyhow::Result<()> {
    let restores: Api<arca_api::Restore> = Api::all(client.clone());
    let list = match restores.list(&Default::default()).await {
        Ok(list) => list,
        // No CRD, no Restores.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e).context("listing Restores"),
    };
    for restore in list {
        let finalizers = restore.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == RESTORE_FINALIZER) {
            continue;
        }
        let kept: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != RESTORE_FINALIZER)
            .collect();
        let name = restore.metadata.name.clone().unwrap_or_default();
        let namespace = restore.metadata.namespace.clone().unwrap_or_default();
        let api: Api<arca_api::Restore> = Api::namespaced(client.clone(), &namespace);
        let patch = serde_json::json!({"metadata": {"finalizers": kept}});
        match api
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(e).with_context(|| format!("releasing Restore {namespace}/{name}"));
            }
        }
    }
    Ok(())
}
