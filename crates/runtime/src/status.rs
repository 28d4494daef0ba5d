//! Writing status by server-side apply: one field manager per controller, the whole status
//! each time (so fields the controller no longer sets are removed).

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

/// Applies `status` as the whole status of `name`, owned by `manager`.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + Sync,
{
    apply(api, name, manager, None, status).await
}

/// Applies `status` like [`apply_status`], but only to the object as it was at
/// `resource_version`: the claim a controller makes before working on what it read. False
/// when the object changed since (a stale cache entry, another writer): nothing is written,
/// and the fresh object comes back through the watch.
pub async fn claim_status<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    resource_version: &str,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + Sync,
{
    match apply(api, name, manager, Some(resource_version), status).await {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The one status write: a forced server-side apply of the whole status, conditional on
/// `resource_version` when one is given.
async fn apply<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    resource_version: Option<&str>,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + Sync,
{
    let mut patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(version) = resource_version {
        patch["metadata"] = serde_json::json!({"name": name, "resourceVersion": version});
    }
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// The first status write of a run: [`claim_status`] onto `object` as this reconcile read
/// it. False (logged) when it changed since: a stale cache entry never starts a second run
/// nor marks a finished one FailedValidation.
pub async fn claim<K, S>(
    client: &kube::Client,
    object: &K,
    manager: &str,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + Sync,
{
    use kube::ResourceExt;
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let version = object.resource_version().unwrap_or_default();
    let claimed = claim_status(&api, &name, manager, &version, status).await?;
    if !claimed {
        tracing::info!(object = %name, kind = %K::kind(&()), "changed since it was read: not started (the fresh object comes next)");
    }
    Ok(claimed)
}

/// Seconds from `start` (none: the epoch) to `end`, for durations in metrics and Events.
pub fn seconds_since(
    start: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    end: jiff::Timestamp,
) -> f64 {
    let start = start.map(|t| t.0.as_millisecond()).unwrap_or_default();
    (end.as_millisecond() - start) as f64 / 1000.0
}

/// A Kubernetes timestamp.
pub fn time(t: jiff::Timestamp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arca_api::{Backup, BackupPhase, BackupStatus};
    use http_body_util::BodyExt;

    /// The claim carries the resourceVersion it decided from; the apiserver's 409 (the
    /// object changed since) is "not claimed", not an error.
    #[tokio::test]
    async fn a_claim_is_conditional_on_the_version_read() {
        for (status, claimed) in [(200u16, true), (409, false)] {
            let (service, mut handle) = tower_test::mock::pair::<
                http::Request<kube::client::Body>,
                http::Response<kube::client::Body>,
            >();
            let api: Api<Backup> = Api::namespaced(kube::Client::new(service, "default"), "ns");
            let server = tokio::spawn(async move {
                let (request, respond) = handle.next_request().await.expect("a request");
                let path = request.uri().path().to_string();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let sent: serde_json::Value = serde_json::from_slice(&body).expect("json");
                let answer = if status == 200 {
                    serde_json::json!({"apiVersion": "arca.dev/v1alpha1", "kind": "Backup",
                        "metadata": {"name": "b", "namespace": "ns"}, "spec": {}})
                } else {
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "the object has been modified", "reason": "Conflict", "code": 409})
                };
                respond.send_response(
                    http::Response::builder()
                        .status(status)
                        .body(kube::client::Body::from(
                            serde_json::to_vec(&answer).expect("json"),
                        ))
                        .expect("response"),
                );
                (path, sent)
            });
            let wanted = BackupStatus {
                phase: Some(BackupPhase::InProgress),
                ..BackupStatus::default()
            };
            let got = claim_status(&api, "b", "arca-test", "41", &wanted)
                .await
                .expect("answered");
            assert_eq!(got, claimed);
            let (path, sent) = server.await.expect("server");
            assert_eq!(
                path,
                "/apis/arca.dev/v1alpha1/namespaces/ns/backups/b/status"
            );
            assert_eq!(sent["metadata"]["resourceVersion"], "41");
            assert_eq!(sent["status"]["phase"], "InProgress");
        }
    }
}
