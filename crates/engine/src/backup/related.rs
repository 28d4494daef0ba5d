//! Related items: what the chosen items need to be restored, fetched after the lists.
//! A pod brings its claims, a claim its volume, a custom resource its CRD, a service
//! account the ClusterRoleBindings that name it (and their ClusterRoles).

use std::collections::BTreeSet;

use kube::Client;
use serde::Deserialize;

use super::{
    collect::{Collector, Stopped},
    list::{RawItem, fetch_page, list_url, parse_object},
    plan::ListScope,
};
use crate::{
    catalogue::{Catalogue, ResourceType},
    filters::{ClusterResources, ResourceFilter},
};

const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";
const CRBS: &str = "clusterrolebindings.rbac.authorization.k8s.io";
const CLUSTER_ROLES: &str = "clusterroles.rbac.authorization.k8s.io";

/// Fetches and writes the related items not written yet.
pub async fn add_related(
    c: &Collector,
    catalogue: &Catalogue,
    resources: &ResourceFilter,
    cluster: ClusterResources,
) -> Result<(), Stopped> {
    let usable = |gr: &str| catalogue.get(gr).filter(|_| !resources.excludes(gr));

    // Claims of pods, even when claims were not chosen themselves.
    if let Some(rt) = usable("persistentvolumeclaims") {
        let wanted: Vec<(String, String)> = {
            let r = c.related.lock().map_err(|_| Stopped)?;
            r.claims_of_pods
                .difference(&r.claims_written)
                .cloned()
                .collect()
        };
        fetch_and_write(c, rt, wanted.into_iter().map(|(ns, n)| (Some(ns), n))).await?;
    }
    if cluster == ClusterResources::None {
        return Ok(());
    }
    if let Some(rt) = usable("persistentvolumes") {
        let wanted = not_written(c, "persistentvolumes", |r| r.volumes_of_claims.clone())?;
        fetch_and_write(c, rt, wanted.into_iter().map(|n| (None, n))).await?;
    }
    if let Some(rt) = usable(CRDS) {
        let wanted = not_written(c, CRDS, |r| r.custom_types.clone())?;
        fetch_and_write(c, rt, wanted.into_iter().map(|n| (None, n))).await?;
    }
    if let Some(rt) = usable(CRBS) {
        let accounts = c
            .related
            .lock()
            .map_err(|_| Stopped)?
            .service_accounts
            .clone();
        if !accounts.is_empty() {
            let roles = bindings_of(c, rt, &accounts).await?;
            if let Some(role_rt) = usable(CLUSTER_ROLES) {
                let wanted = not_written(c, CLUSTER_ROLES, |_| roles.clone())?;
                fetch_and_write(c, role_rt, wanted.into_iter().map(|n| (None, n))).await?;
            }
        }
    }
    Ok(())
}

fn not_written(
    c: &Collector,
    group_resource: &str,
    wanted: impl FnOnce(&super::collect::Related) -> BTreeSet<String>,
) -> Result<Vec<String>, Stopped> {
    let r = c.related.lock().map_err(|_| Stopped)?;
    Ok(wanted(&r)
        .into_iter()
        .filter(|name| {
            !r.cluster_written
                .contains(&(group_resource.to_string(), name.clone()))
        })
        .collect())
}

async fn fetch_and_write(
    c: &Collector,
    rt: &ResourceType,
    wanted: impl Iterator<Item = (Option<String>, String)>,
) -> Result<(), Stopped> {
    let mut items = Vec::new();
    for (ns, name) in wanted {
        match get_item(&c.client, rt, ns.as_deref(), &name).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => c.record_warning(
                ns.as_deref(),
                format!(
                    "{} {name} is referenced but does not exist",
                    rt.group_resource()
                ),
            ),
            Err(e) => c.record_error(
                ns.as_deref(),
                format!("getting {} {name}: {e}", rt.group_resource()),
            ),
        }
    }
    c.write(rt, items).await
}

/// GETs one object; None when it does not exist.
pub async fn get_item(
    client: &Client,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<RawItem>, String> {
    let scope = match namespace {
        Some(ns) => ListScope::Namespace(ns.to_string()),
        None => ListScope::Cluster,
    };
    let request = kube::core::Request::new(list_url(rt, &scope))
        .get(name, &kube::api::GetParams::default())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) => parse_object(&body, rt).map(Some).map_err(|e| e.to_string()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Binding {
    #[serde(default)]
    subjects: Vec<Subject>,
    role_ref: RoleRef,
}

#[derive(Deserialize)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

/// Writes the ClusterRoleBindings naming any of `accounts`; returns their ClusterRoles.
async fn bindings_of(
    c: &Collector,
    rt: &ResourceType,
    accounts: &BTreeSet<(String, String)>,
) -> Result<BTreeSet<String>, Stopped> {
    let url = list_url(rt, &ListScope::Cluster);
    let mut roles = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = match fetch_page(&c.client, &url, c.page_size, token.as_deref(), None, rt).await
        {
            Ok(page) => page,
            Err(e) => {
                c.record_error(None, format!("listing {}: {e}", rt.group_resource()));
                return Ok(roles);
            }
        };
        token = page.continue_token.clone();
        let written = c
            .related
            .lock()
            .map_err(|_| Stopped)?
            .cluster_written
            .clone();
        let mut chosen = Vec::new();
        for item in page.items {
            let Ok(binding) = serde_json::from_slice::<Binding>(&item.json) else {
                continue;
            };
            let names_account = binding.subjects.iter().any(|s| {
                s.kind == "ServiceAccount"
                    && accounts.contains(&(s.namespace.clone().unwrap_or_default(), s.name.clone()))
            });
            if !names_account {
                continue;
            }
            if binding.role_ref.kind == "ClusterRole" {
                roles.insert(binding.role_ref.name.clone());
            }
            if !written.contains(&(rt.group_resource(), item.head.metadata.name.clone())) {
                chosen.push(item);
            }
        }
        c.write(rt, chosen).await?;
        if token.is_none() {
            return Ok(roles);
        }
    }
}
