//! Waiting for what later tiers need: CRDs Established and served, namespaces gone from
//! Terminating, namespaces present.

use std::time::Duration;

use kube::Client;
use serde_json::Value;

use crate::catalogue::Catalogue;

const POLL: Duration = Duration::from_millis(500);

async fn get(client: &Client, url: &str) -> Result<Option<Value>, kube::Error> {
    let request = http::Request::get(url)
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    match client.request_text(request).await {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(kube::Error::SerdeError),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until each CRD is Established and its type appears in discovery; returns the
/// refreshed catalogue. Errors name the CRDs still missing.
pub async fn crds_served(
    client: &Client,
    crds: &[String],
    timeout: Duration,
) -> Result<Catalogue, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    for name in crds {
        let url = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
        loop {
            let established = get(client, &url).await.ok().flatten().is_some_and(|crd| {
                crd.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
            });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "CRD {name} did not become Established within {timeout:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
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
    let deadline = tokio::time::Instant::now() + timeout;
    let url = format!("/api/v1/namespaces/{name}");
    loop {
        match get(client, &url).await {
            Ok(Some(ns)) if ns.pointer("/metadata/deletionTimestamp").is_some() => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(format!("reading namespace {name}: {e}")),
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "namespace {name} is still terminating after {timeout:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Creates namespace `name` (labelled with the backup and restore) unless it exists.
pub async fn ensure_namespace(client: &Client, name: &str, labels: &Value) -> Result<bool, String> {
    if get(client, &format!("/api/v1/namespaces/{name}"))
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(false);
    }
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    let request = http::Request::post(format!(
        "/api/v1/namespaces?fieldManager={}",
        super::apply::FIELD_MANAGER
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
    .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(format!("creating namespace {name}: {e}")),
    }
}
