//! Who a run acts as in the cluster. A Backup or Restore outside the operator's namespace
//! is a tenant's: every read, write and hook exec it makes in the cluster impersonates a
//! ServiceAccount of *its own* namespace (`spec.serviceAccountName`, else
//! `--default-service-account`), so the apiserver's RBAC decides what it may do, whatever an
//! archive holds. Arca's own objects (status, PodVolumeBackups, Events) are still written as
//! the operator. This module is the one place an impersonated identity is made, and it can
//! only name a ServiceAccount of the run's namespace.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, Client};

/// The identity a run acts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunIdentity {
    /// The operator itself: an admin's run in the operator's namespace.
    Operator,
    /// `system:serviceaccount:<namespace>:<name>`.
    ServiceAccount { namespace: String, name: String },
}

impl RunIdentity {
    /// The Kubernetes user name the apiserver sees.
    pub fn user(&self) -> Option<String> {
        match self {
            Self::Operator => None,
            Self::ServiceAccount { namespace, name } => {
                Some(format!("system:serviceaccount:{namespace}:{name}"))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "serviceAccountName: {0:?} is not a ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253)"
    )]
    InvalidName(String),
    #[error(
        "serviceAccountName: ServiceAccount {namespace}/{name} does not exist; the runs of this namespace act as it. Create it and bind it what they may do, e.g. `kubectl -n {namespace} create serviceaccount {name} && kubectl -n {namespace} create rolebinding {name} --clusterrole=edit --serviceaccount={namespace}:{name}`"
    )]
    Missing { namespace: String, name: String },
    #[error("looking up ServiceAccount {namespace}/{name}: {source}")]
    Lookup {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The identity of a run in `run_namespace`: the ServiceAccount its spec names, else the
/// default one for tenants; the operator's own in the operator's namespace when unset.
/// The namespace is always the run's own: no spec can name another's account.
pub fn decide(
    run_namespace: &str,
    operator_namespace: &str,
    requested: Option<&str>,
    default_account: &str,
) -> Result<RunIdentity, IdentityError> {
    let name = match requested.filter(|n| !n.is_empty()) {
        Some(name) => name,
        None if run_namespace == operator_namespace => return Ok(RunIdentity::Operator),
        None => default_account,
    };
    if !arca_api::names::is_dns_subdomain(name) {
        return Err(IdentityError::InvalidName(name.to_string()));
    }
    Ok(RunIdentity::ServiceAccount {
        namespace: run_namespace.to_string(),
        name: name.to_string(),
    })
}

/// A client acting as `identity`: the operator's own, or one that adds the
/// `Impersonate-User` header to every request (the apiserver then adds the ServiceAccount's
/// groups itself). The ServiceAccount must exist, so that a missing one is a clear refusal
/// rather than a run of `forbidden` errors.
pub async fn client_for(
    operator: &Client,
    identity: &RunIdentity,
) -> Result<Client, IdentityError> {
    let RunIdentity::ServiceAccount { namespace, name } = identity else {
        return Ok(operator.clone());
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(operator.clone(), namespace);
    match accounts.get_opt(name).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(IdentityError::Missing {
                namespace: namespace.clone(),
                name: name.clone(),
            });
        }
        Err(source) => {
            return Err(IdentityError::Lookup {
                namespace: namespace.clone(),
                name: name.clone(),
                source,
            });
        }
    }
    let user = identity.user().unwrap_or_default();
    impersonating(operator.clone(), &user).ok_or(IdentityError::InvalidName(user))
}

/// `base`, with every request made as `user`; None when `user` cannot be a header value
/// (never for a name from [`decide`]).
fn impersonating(base: Client, user: &str) -> Option<Client> {
    let value = http::HeaderValue::from_str(user).ok()?;
    let default_namespace = base.default_namespace().to_string();
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        let base = base.clone();
        let value = value.clone();
        async move {
            request.headers_mut().insert("Impersonate-User", value);
            base.send(request).await
        }
    });
    Some(Client::new(service, default_namespace))
}

/// Refuses a `--default-service-account` that no ServiceAccount could have.
pub fn check_account_name(name: &str) -> Result<(), String> {
    if arca_api::names::is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_run_acts_as_an_account_of_its_own_namespace_only() {
        let id = decide("team", "arca-system", None, "arca").expect("default");
        assert_eq!(
            id.user().as_deref(),
            Some("system:serviceaccount:team:arca")
        );
        let id = decide("team", "arca-system", Some("backup-runner"), "arca").expect("named");
        assert_eq!(
            id.user().as_deref(),
            Some("system:serviceaccount:team:backup-runner")
        );
        // No spec can reach another namespace's account or another kind of user.
        for hostile in [
            "arca-system:arca",
            "system:serviceaccount:kube-system:admin",
            "../admin",
            "Admin",
            "a b",
            "admin\n",
            &"a".repeat(254),
        ] {
            assert!(
                matches!(
                    decide("team", "arca-system", Some(hostile), "arca"),
                    Err(IdentityError::InvalidName(name)) if name == hostile
                ),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn the_admin_s_runs_act_as_the_operator_unless_they_name_an_account() {
        for unset in [None, Some("")] {
            assert_eq!(
                decide("arca-system", "arca-system", unset, "arca").expect("operator"),
                RunIdentity::Operator
            );
        }
        assert_eq!(
            decide("arca-system", "arca-system", Some("narrow"), "arca")
                .expect("named")
                .user()
                .as_deref(),
            Some("system:serviceaccount:arca-system:narrow")
        );
    }

    #[tokio::test]
    async fn every_request_carries_the_impersonated_user() {
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let base = Client::new(service, "default");
        let tenant = impersonating(base, "system:serviceaccount:team:arca").expect("a valid name");
        let server = tokio::spawn(async move {
            let (request, respond) = handle.next_request().await.expect("a request");
            respond.send_response(
                http::Response::builder()
                    .status(200)
                    .body(kube::client::Body::from(
                        br#"{"kind":"Status","apiVersion":"v1","status":"Success"}"#.to_vec(),
                    ))
                    .expect("response"),
            );
            request
                .headers()
                .get("Impersonate-User")
                .map(|v| v.to_str().unwrap_or_default().to_string())
        });
        let request = http::Request::get("/api/v1/namespaces/team/configmaps")
            .body(Vec::new())
            .expect("request");
        tenant.request_text(request).await.expect("answered");
        assert_eq!(
            server.await.expect("server").as_deref(),
            Some("system:serviceaccount:team:arca")
        );
    }
}
