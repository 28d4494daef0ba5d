//! Tarballs as Velero writes them, and as a bucket writer might: built in the test with the
//! `tar` and `flate2` crates.

#![allow(dead_code)]

use std::io::Write;

use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};

/// One tar entry: raw name bytes (written into the header as they are, unchecked), type
/// and data.
pub struct RawEntry {
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub data: Vec<u8>,
    /// A size written in the header instead of the data's.
    pub claimed_size: Option<u64>,
}

/// A regular file entry.
pub fn file(path: &str, data: impl Into<Vec<u8>>) -> RawEntry {
    RawEntry {
        name: path.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.into(),
        claimed_size: None,
    }
}

/// An entry of any type with a raw name.
pub fn raw(name: &[u8], kind: tar::EntryType, data: &[u8]) -> RawEntry {
    RawEntry {
        name: name.to_vec(),
        kind,
        data: data.to_vec(),
        claimed_size: None,
    }
}

/// `metadata/version` with `version`.
pub fn version(version: &str) -> RawEntry {
    file("metadata/version", format!("{version}\n"))
}

/// The uncompressed tar of `entries`. Names of up to 100 bytes go into the header bytes
/// directly, so the builder's own path checks do not stop hostile ones.
pub fn tar_of(entries: &[RawEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let long = e.name.len() > header.as_old().name.len();
        if !long {
            let name = &mut header.as_old_mut().name;
            name[..e.name.len()].copy_from_slice(&e.name);
        }
        header.set_entry_type(e.kind);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_size(e.claimed_size.unwrap_or(e.data.len() as u64));
        if e.kind == tar::EntryType::Symlink || e.kind == tar::EntryType::Link {
            header.set_link_name("/etc/shadow").expect("link name");
        }
        if long {
            // Longer names go in a GNU long-name entry (Velero's Go writer uses PAX; the
            // reader takes both): only for sane paths, which the builder checks.
            let path = std::str::from_utf8(&e.name).expect("long test names are UTF-8");
            builder
                .append_data(&mut header, path, &e.data[..])
                .expect("entry appended");
            continue;
        }
        header.set_cksum();
        builder
            .append(&header, &e.data[..])
            .expect("entry appended");
    }
    builder.into_inner().expect("tar finished")
}

/// `entries` as a gzip-compressed tarball.
pub fn tarball(entries: &[RawEntry]) -> Vec<u8> {
    gzip(&tar_of(entries))
}

/// `bytes`, gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("compressed");
    gz.finish().expect("gzip finished")
}

/// A Kubernetes object's JSON.
pub fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let mut metadata = json!({"name": name, "uid": format!("uid-{name}"), "resourceVersion": "42"});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": {"x": 1}})
}

/// What Velero writes for one item at its preferred version: the legacy copy, then the
/// `<version>-preferredversion` copy, the same bytes.
pub fn velero_item(
    group_resource: &str,
    version: &str,
    namespace: Option<&str>,
    name: &str,
    json: &Value,
) -> Vec<RawEntry> {
    let bytes = serde_json::to_vec(json).expect("json");
    let scope = match namespace {
        Some(ns) => format!("namespaces/{ns}"),
        None => "cluster".into(),
    };
    vec![
        file(
            &format!("resources/{group_resource}/{scope}/{name}.json"),
            bytes.clone(),
        ),
        file(
            &format!("resources/{group_resource}/{version}-preferredversion/{scope}/{name}.json"),
            bytes,
        ),
    ]
}

/// A tarball as Velero 1.18 writes one: a ConfigMap, a Deployment, a CRD (cluster-scoped)
/// and its object, a HorizontalPodAutoscaler with a second version (API group versions).
pub fn velero_tarball() -> Vec<u8> {
    let mut entries = vec![version("1.1.0")];
    entries.extend(velero_item(
        "configmaps",
        "v1",
        Some("shop"),
        "settings",
        &object("v1", "ConfigMap", Some("shop"), "settings"),
    ));
    entries.extend(velero_item(
        "deployments.apps",
        "v1",
        Some("shop"),
        "web",
        &object("apps/v1", "Deployment", Some("shop"), "web"),
    ));
    entries.extend(velero_item(
        "customresourcedefinitions.apiextensions.k8s.io",
        "v1",
        None,
        "widgets.example.com",
        &object(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com",
        ),
    ));
    entries.extend(velero_item(
        "widgets.example.com",
        "v1",
        Some("shop"),
        "blue",
        &object("example.com/v1", "Widget", Some("shop"), "blue"),
    ));
    entries.extend(velero_item(
        "horizontalpodautoscalers.autoscaling",
        "v2",
        Some("shop"),
        "web",
        &object(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "web",
        ),
    ));
    entries.push(file(
        "resources/horizontalpodautoscalers.autoscaling/v1/namespaces/shop/web.json",
        serde_json::to_vec(&object(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "web",
        ))
        .expect("json"),
    ));
    tarball(&entries)
}
