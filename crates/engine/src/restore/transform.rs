//! How a backed-up object becomes one to create: pure edits of its JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What the edits depend on.
#[derive(Clone, Debug, Default)]
pub struct Transform {
    pub backup_name: String,
    pub restore_name: String,
    /// Backed-up namespace -> namespace restored into.
    pub namespace_mapping: BTreeMap<String, String>,
    /// Keep node ports of Services.
    pub preserve_node_ports: bool,
    /// PersistentVolumes this restore brings back: claims bound to one keep the binding.
    pub restored_volumes: BTreeSet<String>,
}

/// Set by the apiserver; never sent back.
const SERVER_SET: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
];

impl Transform {
    /// The namespace an item of `namespace` is restored into.
    pub fn target_namespace<'a>(&'a self, namespace: &'a str) -> &'a str {
        self.namespace_mapping
            .get(namespace)
            .map(String::as_str)
            .unwrap_or(namespace)
    }

    /// Edits `object` (of `plural.group`) for creation. `keep_status`: the spec's
    /// `restoreStatus` names this resource.
    pub fn apply(&self, group_resource: &str, object: &mut Value, keep_status: bool) {
        let Some(root) = object.as_object_mut() else {
            return;
        };
        if !keep_status {
            root.remove("status");
        }
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_SET {
                meta.remove(*field);
            }
            if let Some(ns) = meta
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                meta.insert("namespace".into(), Value::from(self.target_namespace(&ns)));
            }
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(
                    arca_api::labels::BACKUP_NAME.into(),
                    label_value(&self.backup_name).into(),
                );
                labels.insert(
                    arca_api::labels::RESTORE_NAME.into(),
                    label_value(&self.restore_name).into(),
                );
            }
        }
        match group_resource {
            "namespaces" => self.namespace(root),
            "services" => self.service(root),
            "persistentvolumeclaims" => self.claim(root),
            "persistentvolumes" => self.volume(root),
            "pods" => pod(root),
            "jobs.batch" => job(root),
            "secrets" => secret(root),
            "rolebindings.rbac.authorization.k8s.io"
            | "clusterrolebindings.rbac.authorization.k8s.io" => self.binding(root),
            _ => {}
        }
    }

    fn namespace(&self, root: &mut Map<String, Value>) {
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut)
            && let Some(name) = meta.get("name").and_then(Value::as_str).map(str::to_string)
        {
            meta.insert("name".into(), Value::from(self.target_namespace(&name)));
            if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut)
                && labels.contains_key("kubernetes.io/metadata.name")
            {
                labels.insert(
                    "kubernetes.io/metadata.name".into(),
                    Value::from(self.target_namespace(&name)),
                );
            }
        }
    }

    fn service(&self, root: &mut Map<String, Value>) {
        let Some(spec) = root.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        if !headless {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if !self.preserve_node_ports {
            spec.remove("healthCheckNodePort");
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    port.remove("nodePort");
                }
            }
        }
    }

    fn claim(&self, root: &mut Map<String, Value>) {
        remove_annotations(
            root,
            &[
                "pv.kubernetes.io/bind-completed",
                "pv.kubernetes.io/bound-by-controller",
                "volume.kubernetes.io/selected-node",
            ],
        );
        if let Some(spec) = root.get_mut("spec").and_then(Value::as_object_mut) {
            let volume = spec.get("volumeName").and_then(Value::as_str).unwrap_or("");
            if !self.restored_volumes.contains(volume) {
                spec.remove("volumeName");
            }
        }
    }

    fn volume(&self, root: &mut Map<String, Value>) {
        remove_annotations(root, &["pv.kubernetes.io/bound-by-controller"]);
        let Some(claim) = root
            .get_mut("spec")
            .and_then(|s| s.get_mut("claimRef"))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        claim.remove("uid");
        claim.remove("resourceVersion");
        if let Some(ns) = claim
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            claim.insert("namespace".into(), Value::from(self.target_namespace(&ns)));
        }
    }

    fn binding(&self, root: &mut Map<String, Value>) {
        let Some(subjects) = root.get_mut("subjects").and_then(Value::as_array_mut) else {
            return;
        };
        for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
            if subject.get("kind").and_then(Value::as_str) != Some("ServiceAccount") {
                continue;
            }
            if let Some(ns) = subject
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                subject.insert("namespace".into(), Value::from(self.target_namespace(&ns)));
            }
        }
    }
}

fn remove_annotations(root: &mut Map<String, Value>, keys: &[&str]) {
    if let Some(annotations) = root
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        for key in keys {
            annotations.remove(*key);
        }
    }
}

/// A restored pod is scheduled afresh; its priority comes from its class at admission.
fn pod(root: &mut Map<String, Value>) {
    if let Some(spec) = root.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("nodeName");
        if spec.contains_key("priorityClassName") {
            spec.remove("priority");
        }
    }
}

/// A Job's selector and template labels carry its old uid; the apiserver sets new ones.
fn job(root: &mut Map<String, Value>) {
    const UID_LABELS: &[&str] = &["controller-uid", "batch.kubernetes.io/controller-uid"];
    let Some(spec) = root.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual {
        spec.remove("selector");
        if let Some(labels) = spec
            .get_mut("template")
            .and_then(|t| t.get_mut("metadata"))
            .and_then(|m| m.get_mut("labels"))
            .and_then(Value::as_object_mut)
        {
            for key in UID_LABELS {
                labels.remove(*key);
            }
        }
    }
}

/// A service-account token of the old cluster is useless: the token controller fills it.
fn secret(root: &mut Map<String, Value>) {
    if root.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token") {
        root.remove("data");
    }
}

/// A label value (at most 63 characters): long names are cut and suffixed with a hash.
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..3]);
    let head: String = name.chars().take(56).collect();
    format!(
        "{}-{hash}",
        head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn transform() -> Transform {
        Transform {
            backup_name: "b1".into(),
            restore_name: "r1".into(),
            namespace_mapping: BTreeMap::from([("app".to_string(), "app-copy".to_string())]),
            preserve_node_ports: false,
            restored_volumes: BTreeSet::from(["pv-kept".to_string()]),
        }
    }

    #[test]
    fn strips_server_fields_and_labels_the_origin() {
        let mut cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "app", "uid": "u", "resourceVersion": "9",
                "creationTimestamp": "t", "managedFields": [], "generation": 3,
                "ownerReferences": [{"kind": "X"}], "labels": {"keep": "me"}},
            "data": {"k": "v"}, "status": {"x": 1}
        });
        transform().apply("configmaps", &mut cm, false);
        assert_eq!(
            cm,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "app-copy",
                    "labels": {"keep": "me", "arca.dev/backup-name": "b1", "arca.dev/restore-name": "r1"}},
                "data": {"k": "v"}
            })
        );
        let mut with_status = json!({"metadata": {"name": "x"}, "status": {"phase": "Ready"}});
        transform().apply("widgets.example.com", &mut with_status, true);
        assert_eq!(with_status["status"]["phase"], "Ready");
    }

    #[test]
    fn services_lose_their_addresses_but_headless_stays_headless() {
        let mut svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
            "ports": [{"port": 80, "nodePort": 30080}], "healthCheckNodePort": 31000}});
        transform().apply("services", &mut svc, false);
        assert_eq!(
            svc["spec"],
            json!({"type": "NodePort", "ports": [{"port": 80}]})
        );
        let mut headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        transform().apply("services", &mut headless, false);
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let mut keep = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"nodePort": 30080}]}});
        Transform {
            preserve_node_ports: true,
            ..transform()
        }
        .apply("services", &mut keep, false);
        assert_eq!(keep["spec"]["ports"][0]["nodePort"], 30080);
    }

    #[test]
    fn claims_keep_their_binding_only_to_a_restored_volume() {
        let annotations = json!({"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes", "mine": "x"});
        let mut kept = json!({"metadata": {"name": "a", "annotations": annotations}, "spec": {"volumeName": "pv-kept"}});
        transform().apply("persistentvolumeclaims", &mut kept, false);
        assert_eq!(kept["spec"]["volumeName"], "pv-kept");
        assert_eq!(kept["metadata"]["annotations"], json!({"mine": "x"}));
        let mut dynamic = json!({"metadata": {"name": "b"}, "spec": {"volumeName": "pvc-123"}});
        transform().apply("persistentvolumeclaims", &mut dynamic, false);
        assert!(dynamic["spec"].get("volumeName").is_none());
        let mut pv = json!({"metadata": {"name": "pv-kept"}, "spec": {"claimRef": {"namespace": "app", "name": "a", "uid": "u", "resourceVersion": "1"}}});
        transform().apply("persistentvolumes", &mut pv, false);
        assert_eq!(
            pv["spec"]["claimRef"],
            json!({"namespace": "app-copy", "name": "a"})
        );
    }

    #[test]
    fn namespaces_and_bindings_follow_the_mapping() {
        let mut ns =
            json!({"metadata": {"name": "app", "labels": {"kubernetes.io/metadata.name": "app"}}});
        transform().apply("namespaces", &mut ns, false);
        assert_eq!(ns["metadata"]["name"], "app-copy");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "app-copy"
        );
        let mut rb = json!({"metadata": {"name": "rb", "namespace": "app"}, "subjects": [
            {"kind": "ServiceAccount", "name": "sa", "namespace": "app"},
            {"kind": "User", "name": "alice"}]});
        transform().apply("rolebindings.rbac.authorization.k8s.io", &mut rb, false);
        assert_eq!(rb["subjects"][0]["namespace"], "app-copy");
        assert!(rb["subjects"][1].get("namespace").is_none());
    }

    #[test]
    fn pods_jobs_and_tokens() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "priorityClassName": "high", "priority": 1000}});
        transform().apply("pods", &mut pod, false);
        assert_eq!(pod["spec"], json!({"priorityClassName": "high"}));
        let mut job = json!({"metadata": {"name": "j"}, "spec": {
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u", "controller-uid": "u", "job-name": "j"}}}}});
        transform().apply("jobs.batch", &mut job, false);
        assert!(job["spec"].get("selector").is_none());
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"job-name": "j"})
        );
        let mut token = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token", "data": {"token": "x"}});
        transform().apply("secrets", &mut token, false);
        assert!(token.get("data").is_none());
        let mut opaque =
            json!({"metadata": {"name": "o"}, "type": "Opaque", "data": {"k": "dg=="}});
        transform().apply("secrets", &mut opaque, false);
        assert_eq!(opaque["data"]["k"], "dg==");
    }

    #[test]
    fn long_names_fit_in_a_label() {
        let long = "a".repeat(100);
        let value = label_value(&long);
        assert!(value.len() <= 63, "{value}");
        assert_ne!(
            label_value(&"a".repeat(101)),
            value,
            "distinct names stay distinct"
        );
        assert_eq!(label_value("short"), "short");
    }
}
