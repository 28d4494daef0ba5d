//! `arca location create|get|set`.

use std::collections::BTreeMap;

use arca_api::{
    AccessMode, BackupStorageLocation, BackupStorageLocationSpec, LocationEncryption,
    ObjectStorage, Provider,
};
use k8s_openapi::api::core::v1::SecretKeySelector;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};

use crate::{
    Ctx,
    backup_cmd::{not_found, refused},
    flags::{key_values, object_name},
    output::{self, Format, age, when},
};

#[derive(Debug, clap::Subcommand)]
pub enum LocationCommand {
    /// Create a storage location.
    Create {
        #[arg(value_parser = object_name)]
        name: String,
        /// `aws` (any S3-compatible store) or `filesystem`.
        #[arg(long, value_parser = provider)]
        provider: Provider,
        /// The bucket (aws) or the folder under config path (filesystem).
        #[arg(long)]
        bucket: String,
        /// A folder inside the bucket.
        #[arg(long)]
        prefix: Option<String>,
        /// Provider settings: `region=eu-west-1,s3Url=https://minio:9000,s3ForcePathStyle=true` or `path=/data`.
        #[arg(long, value_parser = key_values)]
        config: Option<BTreeMap<String, String>>,
        /// The Secret key holding the credentials file: `secret=key`.
        #[arg(long, value_parser = secret_key)]
        credential: Option<SecretKeySelector>,
        /// The Secret key holding the CA of a private store: `secret=key`.
        #[arg(long, value_parser = secret_key)]
        cacert: Option<SecretKeySelector>,
        /// Make it the default location.
        #[arg(long)]
        default: bool,
        /// ReadWrite or ReadOnly.
        #[arg(long, value_parser = access_mode)]
        access_mode: Option<AccessMode>,
        /// Encrypt the backups with the key in this Secret key: `secret=key` (32 random bytes,
        /// base64-encoded).
        #[arg(long, value_parser = secret_key, conflicts_with = "generate_encryption_key")]
        encryption_key: Option<SecretKeySelector>,
        /// Encrypt the backups with a new random key, kept in a new Secret
        /// `<name>-encryption-key` (key `key`). Keep a copy of it outside the cluster: without
        /// it the backups cannot be read.
        #[arg(long)]
        generate_encryption_key: bool,
    },
    /// List locations, or show one.
    Get { name: Option<String> },
    /// Change a location.
    Set {
        name: String,
        /// Make it (or stop it being) the default location.
        #[arg(long)]
        default: Option<bool>,
        /// ReadWrite or ReadOnly.
        #[arg(long, value_parser = access_mode)]
        access_mode: Option<AccessMode>,
        /// The Secret key holding the credentials file: `secret=key`.
        #[arg(long, value_parser = secret_key)]
        credential: Option<SecretKeySelector>,
        /// The Secret key holding the CA of a private store: `secret=key`.
        #[arg(long, value_parser = secret_key)]
        cacert: Option<SecretKeySelector>,
    },
}

fn provider(text: &str) -> Result<Provider, String> {
    match text {
        "aws" | "velero.io/aws" => Ok(Provider::Aws),
        "filesystem" => Ok(Provider::Filesystem),
        other => Err(format!(
            "{other:?} is not a provider Arca has: aws (any S3-compatible store) or filesystem"
        )),
    }
}

fn access_mode(text: &str) -> Result<AccessMode, String> {
    match text {
        "ReadWrite" => Ok(AccessMode::ReadWrite),
        "ReadOnly" => Ok(AccessMode::ReadOnly),
        other => Err(format!("{other:?} is neither ReadWrite nor ReadOnly")),
    }
}

fn secret_key(text: &str) -> Result<SecretKeySelector, String> {
    let (name, key) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not secret=key"))?;
    if name.is_empty() || key.is_empty() {
        return Err(format!("{text:?} is not secret=key"));
    }
    Ok(SecretKeySelector {
        name: name.into(),
        key: key.into(),
        optional: None,
    })
}

/// Makes Secret `<location>-encryption-key` with a new random key; never replaces one.
async fn generate_key(ctx: &Ctx, location: &str) -> anyhow::Result<SecretKeySelector> {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    let name = format!("{location}-encryption-key");
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "arca".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "key".to_string(),
            ByteString(arca_store::Key::generate().to_base64().into_bytes()),
        )])),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client().await?, &ctx.namespace);
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => anyhow::bail!(
            "Secret {}/{name} already exists: its key is kept as it is. Name it with --encryption-key {name}=key, or delete it if no backup uses it",
            ctx.namespace
        ),
        Err(e) => return Err(e.into()),
    }
    println!(
        "Secret {}/{name} holds the new encryption key: keep a copy outside the cluster (`kubectl get secret -n {} {name} -o yaml`); without it the backups cannot be read.",
        ctx.namespace, ctx.namespace
    );
    Ok(SecretKeySelector {
        name,
        key: "key".into(),
        optional: None,
    })
}

pub async fn run(ctx: &Ctx, command: LocationCommand) -> anyhow::Result<()> {
    let api: Api<BackupStorageLocation> = Api::namespaced(ctx.client().await?, &ctx.namespace);
    match command {
        LocationCommand::Create {
            name,
            provider,
            bucket,
            prefix,
            config,
            credential,
            cacert,
            default,
            access_mode,
            encryption_key,
            generate_encryption_key,
        } => {
            let config = config.unwrap_or_default();
            if provider == Provider::Filesystem && !config.contains_key("path") {
                anyhow::bail!("--config: provider filesystem needs path=<directory>");
            }
            let encryption_key = match (encryption_key, generate_encryption_key) {
                (Some(selector), _) => Some(selector),
                (None, true) => Some(generate_key(ctx, &name).await?),
                (None, false) => None,
            };
            let spec = BackupStorageLocationSpec {
                provider,
                object_storage: ObjectStorage {
                    bucket,
                    prefix,
                    ca_cert: None,
                    ca_cert_ref: cacert,
                },
                config,
                credential,
                default,
                access_mode: access_mode.unwrap_or_default(),
                backup_sync_period: None,
                validation_frequency: None,
                encryption: encryption_key
                    .map(|key_secret_ref| LocationEncryption { key_secret_ref }),
            };
            api.create(
                &PostParams::default(),
                &BackupStorageLocation::new(&name, spec),
            )
            .await
            .map_err(|e| refused("location", &name, e))?;
            println!(
                "Location {name} created; `arca location get {name}` shows whether it is Available."
            );
            Ok(())
        }
        LocationCommand::Get { name } => {
            let locations = match name {
                Some(name) => vec![
                    api.get_opt(&name)
                        .await?
                        .ok_or_else(|| not_found("location", &name, &ctx.namespace))?,
                ],
                None => api.list(&ListParams::default()).await?.items,
            };
            if ctx.output != Format::Table {
                return output::print_objects(ctx.output, &locations);
            }
            let rows: Vec<Vec<String>> = locations
                .iter()
                .map(|l| {
                    let s = l.status.clone().unwrap_or_default();
                    vec![
                        l.name_any(),
                        format!("{:?}", l.spec.provider).to_lowercase(),
                        format!(
                            "{}/{}",
                            l.spec.object_storage.bucket,
                            l.spec.object_storage.prefix.clone().unwrap_or_default()
                        ),
                        s.phase
                            .map(|p| format!("{p:?}"))
                            .unwrap_or_else(|| "Unknown".into()),
                        when(s.last_validation_time.as_ref()),
                        format!("{:?}", l.spec.access_mode),
                        if l.spec.default {
                            "true".into()
                        } else {
                            String::new()
                        },
                        s.message.unwrap_or_default(),
                        age(l.metadata.creation_timestamp.as_ref()),
                    ]
                })
                .collect();
            output::print_table(
                &[
                    "NAME",
                    "PROVIDER",
                    "BUCKET/PREFIX",
                    "PHASE",
                    "LAST VALIDATED",
                    "ACCESS MODE",
                    "DEFAULT",
                    "MESSAGE",
                    "AGE",
                ],
                &rows,
            );
            Ok(())
        }
        LocationCommand::Set {
            name,
            default,
            access_mode,
            credential,
            cacert,
        } => {
            api.get_opt(&name)
                .await?
                .ok_or_else(|| not_found("location", &name, &ctx.namespace))?;
            let mut spec = serde_json::Map::new();
            if let Some(d) = default {
                spec.insert("default".into(), d.into());
            }
            if let Some(mode) = access_mode {
                spec.insert("accessMode".into(), serde_json::to_value(mode)?);
            }
            if let Some(c) = credential {
                spec.insert("credential".into(), serde_json::to_value(c)?);
            }
            if let Some(c) = cacert {
                spec.insert("objectStorage".into(), serde_json::json!({"caCertRef": c}));
            }
            if spec.is_empty() {
                anyhow::bail!(
                    "nothing to set: give --default, --access-mode, --credential or --cacert"
                );
            }
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": spec})),
            )
            .await?;
            println!("Location {name} updated.");
            Ok(())
        }
    }
}
