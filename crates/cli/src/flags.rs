//! Flags shared by `backup create` and `schedule create` (Velero's names), and parsers that
//! refuse bad input with one line naming the flag.

use std::collections::BTreeMap;

use arca_api::{BackupSpec, ConfigMapReference, Duration, UploaderConfig, VolumeCompression};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// What to back up.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupFlags {
    /// Namespaces to back up (globs allowed), comma-separated. Default: all.
    #[arg(long, value_delimiter = ',')]
    pub include_namespaces: Vec<String>,
    /// Namespaces never backed up (globs allowed), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// Resources to back up (deploy, configmaps, widgets.example.com), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub include_resources: Vec<String>,
    /// Resources never backed up, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_resources: Vec<String>,
    /// true: all cluster-scoped resources; false: none. Default: those needed, or all when
    /// every namespace is backed up.
    #[arg(long)]
    pub include_cluster_resources: Option<bool>,
    /// Cluster-scoped resources to back up (`*`: all), comma-separated: Velero's scoped
    /// filters, instead of --include-resources, --exclude-resources and
    /// --include-cluster-resources.
    #[arg(long, value_delimiter = ',')]
    pub include_cluster_scoped_resources: Vec<String>,
    /// Cluster-scoped resources never backed up (`*`: all), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_cluster_scoped_resources: Vec<String>,
    /// Namespaced resources to back up (default: all), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub include_namespace_scoped_resources: Vec<String>,
    /// Namespaced resources never backed up (`*`: all), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude_namespace_scoped_resources: Vec<String>,
    /// Only objects matching this label selector (`app=web,tier in (a,b)`).
    #[arg(short = 'l', long, value_parser = selector)]
    pub selector: Option<LabelSelector>,
    /// Objects matching any of these selectors, separated by ` or ` (`app=a or app=b`).
    #[arg(long, value_parser = or_selectors)]
    pub or_selector: Option<Vec<LabelSelector>>,
    /// How long the backup is kept (`720h`, `30m`).
    #[arg(long)]
    pub ttl: Option<Duration>,
    /// The location to write to. Default: the default location.
    #[arg(long)]
    pub storage_location: Option<String>,
    /// Back up the data of every pod volume (of types that hold data) unless a pod opts
    /// out with `backup.arca.dev/backup-volumes-excludes`; the node agents copy it.
    #[arg(long)]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// Objects written first, in order, per resource (their pods' hooks run in that
    /// order too), as Velero writes it: `pods=ns/a,ns/b;persistentvolumeclaims=ns/c`.
    #[arg(long, value_parser = ordered_resources)]
    pub ordered_resources: Option<BTreeMap<String, String>>,
    /// A ConfigMap of the namespace holding resource policies (Velero's format) that
    /// choose which volumes' data is backed up.
    #[arg(long, value_parser = object_name)]
    pub resource_policies_configmap: Option<String>,
    /// `off`: store pod volume data as it is, without trying to compress it (faster, for
    /// data that is already compressed or encrypted). Default `auto`: compressed where that
    /// saves at least 3%.
    #[arg(long, value_parser = volume_compression)]
    pub volume_compression: Option<VolumeCompression>,
    /// The ServiceAccount of the namespace the backup acts as (default: the operator's own
    /// in its namespace, else the operator's `--default-service-account`).
    #[arg(long)]
    pub service_account_name: Option<String>,
    /// CSI snapshots of the claims backed up: `true` (an error for a claim that cannot be
    /// snapshotted), `false` (none). Default: where a VolumeSnapshotClass exists, warning
    /// for the others.
    #[arg(long)]
    pub snapshot_volumes: Option<bool>,
    /// How long a CSI snapshot may take to become ready (default `10m`).
    #[arg(long)]
    pub csi_snapshot_timeout: Option<Duration>,
    /// Copy each CSI snapshot's data into the bucket (the node agent reads it through a
    /// temporary claim), then delete the snapshot: the backup no longer needs the storage
    /// system or the cluster.
    #[arg(long)]
    pub snapshot_move_data: bool,
}

impl BackupFlags {
    pub fn spec(&self) -> anyhow::Result<BackupSpec> {
        if self.selector.is_some() && self.or_selector.is_some() {
            anyhow::bail!("--selector and --or-selector cannot be used together: use one of them");
        }
        let spec = BackupSpec {
            included_namespaces: self.include_namespaces.clone(),
            excluded_namespaces: self.exclude_namespaces.clone(),
            included_resources: self.include_resources.clone(),
            excluded_resources: self.exclude_resources.clone(),
            include_cluster_resources: self.include_cluster_resources,
            included_cluster_scoped_resources: self.include_cluster_scoped_resources.clone(),
            excluded_cluster_scoped_resources: self.exclude_cluster_scoped_resources.clone(),
            included_namespace_scoped_resources: self.include_namespace_scoped_resources.clone(),
            excluded_namespace_scoped_resources: self.exclude_namespace_scoped_resources.clone(),
            label_selector: self.selector.clone(),
            or_label_selectors: self.or_selector.clone().unwrap_or_default(),
            ttl: self.ttl,
            storage_location: self.storage_location.clone(),
            default_volumes_to_fs_backup: self.default_volumes_to_fs_backup,
            service_account_name: self.service_account_name.clone(),
            ordered_resources: self.ordered_resources.clone().unwrap_or_default(),
            resource_policy: self.resource_policies_configmap.clone().map(|name| {
                ConfigMapReference {
                    api_group: None,
                    kind: "ConfigMap".into(),
                    name,
                }
            }),
            uploader_config: self.volume_compression.map(|c| UploaderConfig {
                compression: Some(c),
            }),
            snapshot_volumes: self.snapshot_volumes,
            csi_snapshot_timeout: self.csi_snapshot_timeout,
            snapshot_move_data: self.snapshot_move_data.then_some(true),
            ..BackupSpec::default()
        };
        if spec.uses_old_resource_filters() && spec.uses_scoped_resource_filters() {
            anyhow::bail!(
                "--include-resources, --exclude-resources and --include-cluster-resources cannot be used together with the --include/exclude-cluster/namespace-scoped-resources flags: use one kind"
            );
        }
        Ok(spec)
    }
}

/// `pods=ns/a,ns/b;pvc=ns/c` into {pods: "ns/a,ns/b", pvc: "ns/c"}.
fn ordered_resources(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(';').filter(|p| !p.trim().is_empty()) {
        let (resource, names) = part
            .split_once('=')
            .map(|(r, n)| (r.trim(), n.trim()))
            .filter(|(r, n)| !r.is_empty() && !n.is_empty())
            .ok_or_else(|| {
                format!("{part:?} is not resource=names (write pods=ns/a,ns/b;pvc=ns/c)")
            })?;
        if out
            .insert(resource.to_string(), names.to_string())
            .is_some()
        {
            return Err(format!(
                "{resource} is given twice: give one list per resource"
            ));
        }
    }
    Ok(out)
}

fn volume_compression(text: &str) -> Result<VolumeCompression, String> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(VolumeCompression::Auto),
        "off" => Ok(VolumeCompression::Off),
        _ => Err(format!(
            "{text:?} is not a compression mode: use auto or off"
        )),
    }
}

pub fn selector(text: &str) -> Result<LabelSelector, String> {
    arca_engine::filters::parse_selector(text).map_err(|e| e.to_string())
}

fn or_selectors(text: &str) -> Result<Vec<LabelSelector>, String> {
    text.split(" or ").map(selector).collect()
}

/// `a:b,c:d` into {a: b, c: d}.
pub fn mappings(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (from, to) = pair.split_once(':').ok_or_else(|| {
                format!("{pair:?} is not source:target (write --namespace-mappings a:b,c:d)")
            })?;
            let (from, to) = (from.trim(), to.trim());
            if from.is_empty() || to.is_empty() {
                return Err(format!("{pair:?} has an empty namespace"));
            }
            Ok((from.to_string(), to.to_string()))
        })
        .collect()
}

/// `k=v,k2=v2` into a map.
pub fn key_values(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{pair:?} is not key=value"))
        })
        .collect()
}

/// A name Kubernetes accepts for an object (DNS-1123 subdomain, at most 63 for our labels).
pub fn object_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a valid name: lowercase letters, digits, '-' and '.', at most 63, starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_and_key_values() {
        assert_eq!(
            mappings("a:b, c:d").expect("ok"),
            BTreeMap::from([("a".into(), "b".into()), ("c".into(), "d".into())])
        );
        assert!(
            mappings("a-b")
                .expect_err("bad")
                .contains("is not source:target")
        );
        assert!(mappings("a:").is_err());
        assert_eq!(
            key_values("region=eu,s3Url=http://x:9000").expect("ok")["s3Url"],
            "http://x:9000"
        );
        assert!(key_values("region").is_err());
    }

    #[test]
    fn ordered_resources_as_velero_writes_them() {
        assert_eq!(
            ordered_resources("pods=ns/a,ns/b; pvc=ns/c;").expect("ok"),
            BTreeMap::from([
                ("pods".into(), "ns/a,ns/b".into()),
                ("pvc".into(), "ns/c".into())
            ])
        );
        assert!(
            ordered_resources("pods")
                .expect_err("bad")
                .contains("resource=names")
        );
        assert!(
            ordered_resources("pods=a/b;pods=a/c")
                .expect_err("twice")
                .contains("twice")
        );
    }

    #[test]
    fn volume_compression_modes() {
        assert_eq!(volume_compression("Off"), Ok(VolumeCompression::Off));
        assert_eq!(volume_compression("auto"), Ok(VolumeCompression::Auto));
        assert!(
            volume_compression("max")
                .expect_err("unknown")
                .contains("use auto or off")
        );
    }

    #[test]
    fn names() {
        assert!(object_name("nightly-2026").is_ok());
        assert!(object_name("Nightly").is_err());
        assert!(object_name("-x").is_err());
        assert!(object_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn or_selectors_split_on_or() {
        assert_eq!(or_selectors("app=a or tier in (x,y)").expect("ok").len(), 2);
    }
}
