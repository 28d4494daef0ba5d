//! `<name>-podvolumebackups.json.gz`: which pod volumes have file-level data, and in what.

use serde::Deserialize;

use crate::VeleroError;

/// What wrote a volume's file-level data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uploader {
    /// restic (`restic/<ns>` repositories). Velero before 1.10 wrote no uploader type: restic.
    Restic,
    /// kopia (`kopia/<ns>` repositories), Velero's default since 1.10.
    Kopia,
    /// Anything else, as written.
    Other(String),
}

impl Uploader {
    fn parse(s: &str) -> Self {
        match s {
            "" | "restic" => Self::Restic,
            "kopia" => Self::Kopia,
            other => Self::Other(other.to_string()),
        }
    }
}

/// One PodVolumeBackup of a Velero backup: a volume of a pod whose files Velero copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodVolumeData {
    /// The PodVolumeBackup's name.
    pub name: String,
    /// The pod's namespace.
    pub pod_namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's uid at backup time.
    pub pod_uid: Option<String>,
    /// The volume's name in the pod.
    pub volume: String,
    /// restic or kopia.
    pub uploader: Uploader,
    /// `status.phase` (Completed, Failed, ...).
    pub phase: String,
    /// The snapshot in the repository; None when none was taken.
    pub snapshot_id: Option<String>,
    /// `spec.repoIdentifier`: the repository's URL as Velero named it.
    pub repository: String,
    /// The node whose agent copied it.
    pub node: Option<String>,
    /// `status.progress.totalBytes`.
    pub total_bytes: Option<u64>,
    /// `status.message` (why it failed).
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    metadata: RawMeta,
    spec: RawSpec,
    #[serde(default)]
    status: RawStatus,
}

#[derive(Deserialize)]
struct RawMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(default)]
    node: Option<String>,
    pod: RawPod,
    volume: String,
    #[serde(default)]
    repo_identifier: String,
    #[serde(default)]
    uploader_type: Option<String>,
}

#[derive(Deserialize)]
struct RawPod {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default, rename = "snapshotID")]
    snapshot_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    progress: Option<RawProgress>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProgress {
    #[serde(default)]
    total_bytes: Option<u64>,
}

/// Parses the decompressed `-podvolumebackups.json` (a JSON array of PodVolumeBackups, or
/// `null` when there were none) read from `key`.
pub(crate) fn parse(bytes: &[u8], key: &str) -> Result<Vec<PodVolumeData>, VeleroError> {
    let bad = |detail: String| VeleroError::Metadata {
        key: key.into(),
        detail,
    };
    let raw: Option<Vec<Raw>> = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("not a JSON list of PodVolumeBackups: {e}")))?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|r| {
            if r.spec.pod.namespace.is_empty() || r.spec.pod.name.is_empty() {
                return Err(bad(format!(
                    "PodVolumeBackup {:?} names no pod (spec.pod.namespace and .name)",
                    r.metadata.name
                )));
            }
            // Names become repository paths and work items: only what Kubernetes allows.
            let names_ok = crate::names::is_dns_label(&r.spec.pod.namespace)
                && crate::names::is_dns_subdomain(&r.spec.pod.name)
                && crate::names::is_dns_label(&r.spec.volume);
            if !names_ok {
                return Err(bad(format!(
                    "PodVolumeBackup {:?} names pod {:?}/{:?} volume {:?}: not Kubernetes names",
                    r.metadata.name, r.spec.pod.namespace, r.spec.pod.name, r.spec.volume
                )));
            }
            Ok(PodVolumeData {
                name: r.metadata.name,
                pod_namespace: r.spec.pod.namespace,
                pod_name: r.spec.pod.name,
                pod_uid: r.spec.pod.uid.filter(|u| !u.is_empty()),
                volume: r.spec.volume,
                uploader: Uploader::parse(r.spec.uploader_type.as_deref().unwrap_or_default()),
                phase: r.status.phase.unwrap_or_default(),
                snapshot_id: r.status.snapshot_id.filter(|s| !s.is_empty()),
                repository: r.spec.repo_identifier,
                node: r.spec.node.filter(|n| !n.is_empty()),
                total_bytes: r.status.progress.and_then(|p| p.total_bytes),
                message: r.status.message.filter(|m| !m.is_empty()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velero_s_list() -> Result<(), VeleroError> {
        let json = r#"[{"metadata":{"name":"b1-x7k2p","namespace":"velero"},"spec":{"node":"n1","pod":{"kind":"Pod","namespace":"shop","name":"db-0","uid":"p-1"},"volume":"data","backupStorageLocation":"default","repoIdentifier":"s3:http://s3/bucket/kopia/shop","uploaderType":"kopia","tags":{"backup":"b1"}},"status":{"phase":"Completed","snapshotID":"k1f2","path":"/host_pods/p-1/volumes/kubernetes.io~empty-dir/data","progress":{"totalBytes":2048,"bytesDone":2048}}},
        {"metadata":{"name":"b1-old"},"spec":{"pod":{"namespace":"shop","name":"web"},"volume":"cache"},"status":{"phase":"Failed","message":"boom"}}]"#;
        let list = parse(json.as_bytes(), "k")?;
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].uploader, Uploader::Kopia);
        assert_eq!(list[0].snapshot_id.as_deref(), Some("k1f2"));
        assert_eq!(list[0].total_bytes, Some(2048));
        assert_eq!(list[0].pod_uid.as_deref(), Some("p-1"));
        assert_eq!(list[1].uploader, Uploader::Restic);
        assert_eq!(list[1].message.as_deref(), Some("boom"));
        assert!(parse(b"null", "k")?.is_empty());
        let err = parse(
            br#"[{"metadata":{"name":"x"},"spec":{"pod":{},"volume":"v"}}]"#,
            "k",
        )
        .expect_err("no pod");
        assert!(err.to_string().contains("names no pod"), "{err}");
        for (ns, pod, volume) in [
            ("../bank", "p", "v"),
            ("shop", "a/b", "v"),
            ("shop", "p", "../x"),
        ] {
            let json = format!(
                r#"[{{"metadata":{{"name":"x"}},"spec":{{"pod":{{"namespace":"{ns}","name":"{pod}"}},"volume":"{volume}"}}}}]"#
            );
            let err = parse(json.as_bytes(), "k").expect_err("hostile names");
            assert!(err.to_string().contains("not Kubernetes names"), "{err}");
        }
        Ok(())
    }
}
