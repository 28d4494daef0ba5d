//! Waiting for what later tiers need: CRDs Established (watched, kube-runtime's
//! `await_condition`) and served (discovery, polled), namespaces gone from Terminating
//! (watched), namespaces present.

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

use crate::catalogue::Catalogue;

const POLL: Duration = Duration::from_millis(500);

/// Waits until each CRD is Established and its type appears in discovery; returns the
/// refreshed catalogue. Errors name the CRDs still missing.
pub async fn crds_served(
    client: &Client,
    crds: &[String],
    timeout: Duration,
) -> Result<Catalogue, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for name in crds {
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        match tokio::time::timeout_at(deadline, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("watching CRD {name}: {e}")),
            Err(_) => {
                return Err(format!(
                    "CRD {name} did not become Established within {timeout:?}"
                ));
            }
        }
    }
    loop {
        let catalogue = Catalogue::discover(client)
            .await
            .map_err(|e| e.to_string())?;
        let missing: Vec<&String> = crds
            .iter()
            .filter(|gr| catalogue.get(gr).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(catalogue);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "types {missing:?} are not served yet after {timeout:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits while namespace `name` is being deleted (a restore right after `kubectl delete ns`).
pub async fn namespace_not_terminating(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let settled = kube::runtime::wait::await_condition(api, name, |ns: Option<&Namespace>| {
        ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_none())
    });
    match tokio::time::timeout(timeout, settled).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("reading namespace {name}: {e}")),
        Err(_) => Err(format!(
            "namespace {name} is still terminating after {timeout:?}"
        )),
    }
}

/// Creates namespace `name` (labelled with the backup and restore) unless it exists.
pub async fn ensure_namespace(
    client: &Client,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<bool, String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let exists = api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading namespace {name}: {e}"))?
        .is_some();
    if exists {
        return Ok(false);
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let params = PostParams {
        field_manager: Some(super::apply::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &namespace).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(format!("creating namespace {name}: {e}")),
    }
}
