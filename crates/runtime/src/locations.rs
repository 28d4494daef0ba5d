//! From a BackupStorageLocation to an object store: provider, bucket, prefix, credentials
//! (an AWS shared-credentials file in a Secret, as Velero's), private CA.

use std::sync::Arc;

use arca_api::{AccessMode, BackupStorageLocation, Provider};
use arca_store::{
    FsStore, ObjectRetention, ObjectStore, S3Config, S3Store, ServerSideEncryption, StoreError,
    parse_shared_credentials,
};
use base64::Engine;
use k8s_openapi::api::core::v1::{Secret, SecretKeySelector};
use kube::{Api, Client, ResourceExt, api::ListParams};

/// Why a location cannot be used, said so an operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("no BackupStorageLocation {name:?} in namespace {namespace}")]
    NotFound { name: String, namespace: String },
    #[error(
        "no storage location given and none is marked default in namespace {0}: set spec.storageLocation or mark a location `default: true`"
    )]
    NoDefault(String),
    #[error("location {0} is ReadOnly: nothing can be written to it")]
    ReadOnly(String),
    #[error("secret {namespace}/{name} (key {key:?}) of location {location}: {problem}")]
    Secret {
        location: String,
        namespace: String,
        name: String,
        key: String,
        problem: String,
    },
    #[error("location {location}: {problem}")]
    Config { location: String, problem: String },
    #[error("location {location} in tenant namespace {namespace}: {problem}")]
    Tenant {
        location: String,
        namespace: String,
        problem: String,
    },
    #[error("location {location}: {source}")]
    Store {
        location: String,
        #[source]
        source: StoreError,
    },
    #[error("reading locations: {0}")]
    Kube(#[from] kube::Error),
}

/// Finds the location a Backup uses: `name`, or the default, in `namespace`.
pub async fn find_location(
    client: &Client,
    namespace: &str,
    name: Option<&str>,
) -> Result<BackupStorageLocation, LocationError> {
    let api: Api<BackupStorageLocation> = Api::namespaced(client.clone(), namespace);
    match name.filter(|n| !n.is_empty()) {
        Some(name) => api
            .get_opt(name)
            .await?
            .ok_or_else(|| LocationError::NotFound {
                name: name.into(),
                namespace: namespace.into(),
            }),
        None => {
            let all = api.list(&ListParams::default()).await?.items;
            let mut defaults: Vec<_> = all.iter().filter(|l| l.spec.default).cloned().collect();
            defaults.sort_by_key(|l| l.name_any());
            match (defaults.into_iter().next(), all.len()) {
                (Some(default), _) => Ok(default),
                (None, 1) => Ok(all
                    .into_iter()
                    .next()
                    .ok_or_else(|| LocationError::NoDefault(namespace.into()))?),
                (None, _) => Err(LocationError::NoDefault(namespace.into())),
            }
        }
    }
}

/// Fails unless the location may be written.
pub fn ensure_writable(location: &BackupStorageLocation) -> Result<(), LocationError> {
    if location.spec.access_mode == AccessMode::ReadOnly {
        return Err(LocationError::ReadOnly(location.name_any()));
    }
    Ok(())
}

/// Why a location in a tenant's namespace (any but `operator_namespace`) may not be used, if
/// it may not. The operator acts as itself when it reaches storage, so a tenant's location
/// must bring its own credentials: without them the S3 client would fall back to the
/// operator's ambient credentials (an instance role, IRSA, environment variables), which may
/// read every tenant's and the admin's backups. A filesystem location would have the operator
/// write as itself wherever its path says. Both are refused before any connection is made.
/// Last, the location must point where the admin lets tenants go (`--tenant-storage`).
pub fn tenant_refusal(
    location: &BackupStorageLocation,
    policy: StoragePolicy<'_>,
) -> Option<String> {
    let namespace = location.namespace().unwrap_or_default();
    if namespace == policy.operator_namespace {
        return None;
    }
    match location.spec.provider {
        Provider::Filesystem => Some(
            "the filesystem provider is for the operator's own namespace: here the operator would read and write as itself wherever config.path says. Use provider aws with spec.credential, or the operator's location (backups then go under tenants/<namespace>/)".into(),
        ),
        Provider::Aws if location.spec.credential.is_none() => Some(
            "spec.credential is required: without it the operator would use its own credentials, which can reach other tenants' backups. Put an AWS credentials file for this bucket in a Secret of this namespace and name it in spec.credential, or use the operator's location (backups then go under tenants/<namespace>/)".into(),
        ),
        Provider::Aws => crate::tenant_storage::refusal(location, policy.tenant_storage),
    }
}

/// Whose locations are whose: those of the operator's namespace are the admin's; any other
/// namespace's are a tenant's, and must point into `tenant_storage`.
#[derive(Debug, Clone, Copy)]
pub struct StoragePolicy<'a> {
    pub operator_namespace: &'a str,
    pub tenant_storage: &'a [crate::tenant_storage::AllowedStorage],
}

/// Opens the location's store. `sub_prefix` narrows it further (a tenant's folder).
/// A location outside the operator's namespace is a tenant's: see [`tenant_refusal`].
pub async fn open_store(
    client: &Client,
    location: &BackupStorageLocation,
    policy: StoragePolicy<'_>,
    sub_prefix: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, LocationError> {
    open_store_with(client, location, policy, sub_prefix, None).await
}

/// [`open_store`], for one backup's writes: every object it writes carries `retention`
/// (the location's `objectLock`, with the backup's retain-until date).
pub async fn open_store_with(
    client: &Client,
    location: &BackupStorageLocation,
    policy: StoragePolicy<'_>,
    sub_prefix: Option<&str>,
    retention: Option<ObjectRetention>,
) -> Result<Arc<dyn ObjectStore>, LocationError> {
    let name = location.name_any();
    let namespace = location.namespace().unwrap_or_default();
    if let Some(problem) = tenant_refusal(location, policy) {
        return Err(LocationError::Tenant {
            location: name,
            namespace,
            problem,
        });
    }
    let spec = &location.spec;
    let config = |problem: String| LocationError::Config {
        location: name.clone(),
        problem,
    };
    let mut prefix = spec.object_storage.prefix.clone().unwrap_or_default();
    if let Some(sub) = sub_prefix {
        prefix = format!("{}/{sub}", prefix.trim_end_matches('/'));
    }
    let sse = ServerSideEncryption::from_config(
        spec.config.get("serverSideEncryption").map(String::as_str),
        spec.config.get("kmsKeyId").map(String::as_str),
    )
    .map_err(&config)?;
    let store: Arc<dyn ObjectStore> = match spec.provider {
        Provider::Filesystem => {
            if spec.object_lock.is_some() {
                return Err(config(
                    "spec.objectLock needs an S3 bucket with object lock enabled (provider aws): a directory cannot refuse deletes. Remove objectLock, or use an S3 location".into(),
                ));
            }
            if sse.is_some() {
                return Err(config(
                    "config.serverSideEncryption and config.kmsKeyId are S3 settings (provider aws); a directory is not encrypted by Arca: remove them".into(),
                ));
            }
            let path = spec
                .config
                .get("path")
                .ok_or_else(|| config("provider filesystem needs config.path".into()))?;
            Arc::new(
                FsStore::new(
                    std::path::Path::new(path),
                    &spec.object_storage.bucket,
                    &prefix,
                )
                .map_err(|source| LocationError::Store {
                    location: name.clone(),
                    source,
                })?,
            )
        }
        Provider::Aws => {
            if spec
                .config
                .get("insecureSkipTLSVerify")
                .is_some_and(|v| v == "true")
            {
                return Err(config(
                    "insecureSkipTLSVerify is not supported: put the store's CA certificate in a Secret and set objectStorage.caCertRef".into(),
                ));
            }
            let credentials = match &spec.credential {
                Some(selector) => {
                    let text = read_secret(client, &name, &namespace, selector).await?;
                    let profile = spec
                        .config
                        .get("profile")
                        .map(String::as_str)
                        .unwrap_or("default");
                    Some(parse_shared_credentials(&text, profile).map_err(|e| {
                        LocationError::Secret {
                            location: name.clone(),
                            namespace: namespace.clone(),
                            name: selector.name.clone(),
                            key: selector.key.clone(),
                            problem: e.to_string(),
                        }
                    })?)
                }
                None => None,
            };
            let ca_pem = match (
                &spec.object_storage.ca_cert_ref,
                &spec.object_storage.ca_cert,
            ) {
                (Some(selector), _) => Some(
                    read_secret(client, &name, &namespace, selector)
                        .await?
                        .into_bytes(),
                ),
                (None, Some(b64)) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|e| config(format!("objectStorage.caCert is not base64: {e}")))?,
                ),
                (None, None) => None,
            };
            Arc::new(
                S3Store::new(S3Config {
                    bucket: spec.object_storage.bucket.clone(),
                    prefix,
                    region: spec.config.get("region").cloned(),
                    endpoint: spec.config.get("s3Url").cloned(),
                    force_path_style: spec
                        .config
                        .get("s3ForcePathStyle")
                        .is_some_and(|v| v == "true"),
                    credentials,
                    ca_pem,
                    public_endpoint: spec.config.get("publicUrl").cloned(),
                    server_side_encryption: sse,
                    retention,
                })
                .await
                .map_err(|source| LocationError::Store {
                    location: name.clone(),
                    source,
                })?,
            )
        }
    };
    Ok(store)
}

/// Checks the store answers: lists the backups folder (as Velero does).
pub async fn check(location: &str, store: &dyn ObjectStore) -> Result<(), LocationError> {
    store
        .list_folders(arca_store::Layout::BACKUPS)
        .await
        .map(|_| ())
        .map_err(|source| LocationError::Store {
            location: location.into(),
            source,
        })
}

/// When the location asks for object lock, checks that its bucket has it enabled.
pub async fn check_object_lock(
    location: &BackupStorageLocation,
    store: &dyn ObjectStore,
) -> Result<(), LocationError> {
    if location.spec.object_lock.is_none() {
        return Ok(());
    }
    let name = location.name_any();
    let enabled = store
        .object_lock_enabled()
        .await
        .map_err(|source| LocationError::Store {
            location: name.clone(),
            source,
        })?;
    match enabled {
        Some(true) => Ok(()),
        Some(false) => Err(LocationError::Config {
            location: name,
            problem: format!(
                "spec.objectLock is set but bucket {:?} does not have S3 Object Lock enabled, so backups would not be immutable. Enable it on the bucket (it needs versioning; most stores allow it only when the bucket is created: `aws s3api create-bucket --object-lock-enabled-for-bucket`), point objectStorage.bucket at a bucket that has it, or remove spec.objectLock",
                location.spec.object_storage.bucket
            ),
        }),
        None => Err(LocationError::Config {
            location: name,
            problem: "spec.objectLock is set but this store has no object lock: use an S3 bucket with object lock enabled, or remove spec.objectLock".into(),
        }),
    }
}

async fn read_secret(
    client: &Client,
    location: &str,
    namespace: &str,
    selector: &SecretKeySelector,
) -> Result<String, LocationError> {
    let problem = |problem: &str| LocationError::Secret {
        location: location.into(),
        namespace: namespace.into(),
        name: selector.name.clone(),
        key: selector.key.clone(),
        problem: problem.into(),
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(&selector.name)
        .await?
        .ok_or_else(|| problem("the Secret does not exist"))?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .ok_or_else(|| problem("the Secret has no such key"))?;
    String::from_utf8(value.0.clone()).map_err(|_| problem("the value is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(namespace: &str, spec: serde_json::Value) -> BackupStorageLocation {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocation",
            "metadata": {"name": "l", "namespace": namespace},
            "spec": spec
        }))
        .expect("a location")
    }

    #[test]
    fn tenants_bring_their_own_credentials_and_no_filesystem() {
        let aws = serde_json::json!({"provider": "aws", "objectStorage": {"bucket": "b"}});
        let with_secret = serde_json::json!({"provider": "aws", "objectStorage": {"bucket": "b"},
            "credential": {"name": "s", "key": "cloud"}});
        let disk = serde_json::json!({"provider": "filesystem", "objectStorage": {"bucket": "b"},
            "config": {"path": "/tmp"}});
        let allowed: Vec<crate::tenant_storage::AllowedStorage> = vec![
            "https://s3.us-east-1.amazonaws.com/b"
                .parse()
                .expect("entry"),
        ];
        let policy = StoragePolicy {
            operator_namespace: "arca-system",
            tenant_storage: &allowed,
        };
        // The operator's own namespace: its credentials and filesystem are the admin's choice.
        for spec in [&aws, &with_secret, &disk] {
            assert_eq!(
                tenant_refusal(&location("arca-system", spec.clone()), policy),
                None
            );
        }
        let refused = tenant_refusal(&location("team", aws), policy).unwrap_or_default();
        assert!(refused.contains("spec.credential is required"), "{refused}");
        assert_eq!(
            tenant_refusal(&location("team", with_secret.clone()), policy),
            None,
            "credentials, and storage the admin allows"
        );
        let nowhere = StoragePolicy {
            operator_namespace: "arca-system",
            tenant_storage: &[],
        };
        let refused = tenant_refusal(&location("team", with_secret), nowhere).unwrap_or_default();
        assert!(
            refused.contains("not storage the admin allows"),
            "{refused}"
        );
        let refused = tenant_refusal(&location("team", disk), policy).unwrap_or_default();
        assert!(refused.contains("filesystem provider"), "{refused}");
    }
}
