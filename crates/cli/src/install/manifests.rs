//! The objects `arca install` applies, built once here: the rendered manifests in
//! deploy/rendered and the Helm chart's templates come from this code.
//! Each RBAC rule says why it is needed (also in docs/reference/rbac.md).

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/arca-dev/arca:", env!("CARGO_PKG_VERSION"));
/// Namespaces with this label may scrape the operator's metrics (NetworkPolicy).
pub const METRICS_ACCESS_LABEL: &str = "arca.dev/metrics-access";
/// Not Velero's 8085: both may run side by side during a migration (on the host network,
/// or under one NetworkPolicy).
const METRICS_PORT: u16 = 8095;

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub namespace: String,
    pub image: String,
    /// Operator replicas; more than one wait on the leader Lease (0 means 1).
    pub replicas: u32,
    pub provider: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub config: BTreeMap<String, String>,
    /// An AWS shared-credentials file.
    pub credentials: Option<String>,
    /// Install the node agent (a DaemonSet in namespace `<namespace>-node-agent`).
    pub use_node_agent: bool,
    /// kubelet's root folder on the nodes (the agent reads `<it>/pods`); empty means
    /// [`DEFAULT_KUBELET_ROOT_DIR`].
    pub kubelet_root_dir: String,
    /// Node labels the operator's pods must match.
    pub node_selector: BTreeMap<String, String>,
    /// Taints the operator's pods tolerate (Toleration objects).
    pub tolerations: Vec<Value>,
    /// The ServiceAccount tenants' runs act as (`arca server --default-service-account`);
    /// empty means `arca`.
    pub default_service_account: String,
    /// Storage tenants' own locations may use (`arca server --tenant-storage`), each
    /// `scheme://host[:port][/bucket]`; the operator's egress is opened to their ports.
    pub tenant_storage: Vec<String>,
}

/// kubelet's root folder unless a distribution moved it (k0s, MicroK8s, RKE and others do).
pub const DEFAULT_KUBELET_ROOT_DIR: &str = "/var/lib/kubelet";

impl Options {
    /// The folder of pods' volumes on each node.
    pub fn host_pods_dir(&self) -> String {
        let root = match self.kubelet_root_dir.trim_end_matches('/') {
            "" => DEFAULT_KUBELET_ROOT_DIR,
            root => root,
        };
        format!("{root}/pods")
    }
}

/// A toleration from `key[=value]:Effect` (`Exists` when there is no value).
pub fn toleration(text: &str) -> Result<Value, String> {
    let (key_value, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not key[=value]:Effect"))?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "{text:?}: the effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let mut t = match key_value.split_once('=') {
        Some((key, value)) => json!({"key": key, "operator": "Equal", "value": value}),
        None => json!({"key": key_value, "operator": "Exists"}),
    };
    if t["key"].as_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?}: the key is empty"));
    }
    t["effect"] = json!(effect);
    Ok(t)
}

/// The node agent's namespace: apart from the operator's, because reading other pods'
/// volumes needs root and a hostPath that the operator's restricted namespace refuses.
pub fn node_agent_namespace(namespace: &str) -> String {
    format!("{namespace}-node-agent")
}

pub fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "arca",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "arca",
        "app.kubernetes.io/managed-by": "arca-install"
    })
}

pub fn meta(name: &str, namespace: Option<&str>, component: &str) -> Value {
    let mut m = json!({"name": name, "labels": labels(component)});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// Every object, in the order they are applied.
pub fn manifests(o: &Options) -> anyhow::Result<Vec<Value>> {
    let ns = o.namespace.as_str();
    let mut out: Vec<Value> = arca_api::all_crds()
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    out.push(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {
            "app.kubernetes.io/part-of": "arca",
            // The operator's pods meet the restricted Pod Security Standard.
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted"
        }}
    }));
    out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("arca", Some(ns), "operator"), "automountServiceAccountToken": true}));
    out.extend(rbac(ns));
    out.push(deployment(o));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta("arca-metrics", Some(ns), "operator"),
        "spec": {
            "selector": {"app.kubernetes.io/name": "arca", "app.kubernetes.io/component": "operator"},
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]
        }
    }));
    out.push(network_policy(o));
    out.extend(location(o));
    if o.use_node_agent {
        out.extend(super::node_agent::objects(o));
    }
    Ok(out)
}

fn rbac(ns: &str) -> Vec<Value> {
    let cluster_role = |name: &str, rules: Value| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(name, None, "operator"), "rules": rules
        })
    };
    let binding = |name: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(name, None, "operator"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "arca", "namespace": ns}]
        })
    };
    vec![
        // Backups read every resource type they may take, and discovery.
        cluster_role(
            "arca-backup-reader",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]},
                {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["watch"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["watch"]},
                {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version"], "verbs": ["get"]}
            ]),
        ),
        binding("arca-backup-reader"),
        // Restores create and (existingResourcePolicy: update) replace objects of any type;
        // restoring Roles and ClusterRoles needs escalate and bind (the apiserver refuses to
        // let anyone grant permissions it lacks otherwise); hooks exec into pods.
        cluster_role(
            "arca-restore-writer",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["create", "update", "patch"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "clusterroles"], "verbs": ["escalate", "bind"]},
                {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
            ]),
        ),
        binding("arca-restore-writer"),
        // CSI snapshots: a backup removes the VolumeSnapshot it made once its content is
        // kept, and a failed one with its content; a deleted backup deletes its contents.
        cluster_role(
            "arca-csi-snapshots",
            json!([
                {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots", "volumesnapshotcontents"], "verbs": ["delete"]}
            ]),
        ),
        binding("arca-csi-snapshots"),
        // Arca's own resources, their status, and Events about them.
        cluster_role(
            "arca-operator",
            json!([
                {"apiGroups": ["arca.dev"], "resources": ["*"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
            ]),
        ),
        binding("arca-operator"),
        // A tenant's Backup or Restore acts as a ServiceAccount of the tenant's namespace, so
        // that namespace's RBAC, not the operator's, decides what it may read, write and exec.
        cluster_role(
            "arca-tenant-impersonator",
            json!([
                {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}
            ]),
        ),
        binding("arca-tenant-impersonator"),
        // Roles for people, aggregated into the built-in ones: `view` reads Arca's objects,
        // `edit` and `admin` also create and delete them. Never the node agent's work items,
        // whose only writer is the operator.
        aggregated(
            "arca-view",
            &["view", "edit", "admin"],
            json!([{"apiGroups": ["arca.dev"], "resources": PEOPLE_RESOURCES, "verbs": ["get", "list", "watch"]}]),
        ),
        aggregated(
            "arca-edit",
            &["edit", "admin"],
            json!([{"apiGroups": ["arca.dev"], "resources": PEOPLE_RESOURCES, "verbs": ["create", "update", "patch", "delete", "deletecollection"]}]),
        ),
        // Leader election: one Lease in Arca's namespace.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta("arca-leader-election", Some(ns), "operator"),
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta("arca-leader-election", Some(ns), "operator"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "arca-leader-election"},
            "subjects": [{"kind": "ServiceAccount", "name": "arca", "namespace": ns}]
        }),
        // The data mover (snapshotMoveData) removes the claim and pod it made in Arca's own
        // namespace to read a snapshot; nowhere else does the operator delete pods or claims.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta("arca-data-mover", Some(ns), "operator"),
            "rules": [{"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims"], "verbs": ["delete"]}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta("arca-data-mover", Some(ns), "operator"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "arca-data-mover"},
            "subjects": [{"kind": "ServiceAccount", "name": "arca", "namespace": ns}]
        }),
    ]
}

/// What people work with: everything of Arca's but the node agent's work items.
const PEOPLE_RESOURCES: [&str; 6] = [
    "backups",
    "restores",
    "schedules",
    "backupstoragelocations",
    "deletebackuprequests",
    "downloadrequests",
];

/// A ClusterRole whose rules the built-in roles `into` (view, edit, admin) take in.
fn aggregated(name: &str, into: &[&str], rules: Value) -> Value {
    let mut labels = labels("operator");
    for role in into {
        labels[format!("rbac.authorization.k8s.io/aggregate-to-{role}")] = json!("true");
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels},
        "rules": rules
    })
}

/// The container's hardening: no root, no privilege escalation, no capabilities, a
/// read-only root file system, the runtime's seccomp profile.
pub fn hardened_container() -> Value {
    json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "privileged": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

fn deployment(o: &Options) -> Value {
    let field = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
    let mut namespace_env = field("metadata.namespace");
    namespace_env["name"] = json!("ARCA_NAMESPACE");
    let mut pod_env = field("metadata.name");
    pod_env["name"] = json!("POD_NAME");
    // Restored pods get an init container of this same image (see `arca restore-helper`).
    let helper_env = json!({"name": "ARCA_RESTORE_HELPER_IMAGE", "value": o.image});
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 3});
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta("arca", Some(&o.namespace), "operator"),
        "spec": {
            "replicas": o.replicas.max(1),
            "selector": {"matchLabels": {"app.kubernetes.io/name": "arca", "app.kubernetes.io/component": "operator"}},
            // A new pod starts and is Ready (standing by for the lease) before an old one
            // stops; the old leader finishes its work in flight, then the lease moves.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels("operator")},
                "spec": {
                    "serviceAccountName": "arca",
                    // Work in flight finishes (or is failed cleanly) before the pod stops.
                    "terminationGracePeriodSeconds": 300,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [{
                        "name": "arca",
                        "image": o.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": server_args(o),
                        "env": [namespace_env, pod_env, helper_env],
                        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"cpu": "2", "memory": "512Mi"}
                        },
                        "securityContext": hardened_container(),
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
                    }],
                    // Also the scratch space of restores of Velero's backups (`--scratch-bytes`,
                    // 768 MiB by default, stays below it).
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
                }
            }
        }
    });
    let pod = &mut deployment["spec"]["template"]["spec"];
    if !o.node_selector.is_empty() {
        pod["nodeSelector"] = json!(o.node_selector);
    }
    if !o.tolerations.is_empty() {
        pod["tolerations"] = json!(o.tolerations);
    }
    deployment
}

/// `arca server`'s arguments in the Deployment.
fn server_args(o: &Options) -> Vec<String> {
    let account = match o.default_service_account.as_str() {
        "" => "arca",
        account => account,
    };
    let mut args = vec![
        "server".to_string(),
        "--log-format=json".into(),
        format!("--metrics-bind-address=0.0.0.0:{METRICS_PORT}"),
        format!("--default-service-account={account}"),
    ];
    args.extend(
        o.tenant_storage
            .iter()
            .map(|t| format!("--tenant-storage={t}")),
    );
    args
}

/// The operator reaches the API server and the store (and DNS); only namespaces labelled
/// `arca.dev/metrics-access=true` reach its metrics port.
fn network_policy(o: &Options) -> Value {
    let mut ports = egress_ports(o);
    for port in o.tenant_storage.iter().map(|t| url_port(t)) {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": meta("arca", Some(&o.namespace), "operator"),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "arca", "app.kubernetes.io/component": "operator"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {METRICS_ACCESS_LABEL: "true"}}}],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}]
            }],
            "egress": [
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"ports": ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect::<Vec<_>>()}
            ]
        }
    })
}

/// The API server's ports and the store's.
pub fn egress_ports(o: &Options) -> Vec<u16> {
    let mut ports: Vec<u16> = vec![443, 6443];
    let store_port = store_port(&o.config);
    if !ports.contains(&store_port) {
        ports.push(store_port);
    }
    ports
}

/// The store's port, from `s3Url` (443 when it names none).
pub fn store_port(config: &BTreeMap<String, String>) -> u16 {
    config.get("s3Url").map(|url| url_port(url)).unwrap_or(443)
}

/// The port of `scheme://host[:port][/path]` (443 when it names none).
pub fn url_port(url: &str) -> u16 {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = after_scheme.split('/').next().unwrap_or_default();
    host.rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .unwrap_or(443)
}

fn location(o: &Options) -> Vec<Value> {
    let (Some(provider), Some(bucket)) = (&o.provider, &o.bucket) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut spec = json!({
        "provider": provider,
        "default": true,
        "objectStorage": {"bucket": bucket},
        "config": o.config
    });
    if let Some(prefix) = &o.prefix {
        spec["objectStorage"]["prefix"] = json!(prefix);
    }
    if let Some(credentials) = &o.credentials {
        out.push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": meta("cloud-credentials", Some(&o.namespace), "operator"),
            "stringData": {"cloud": credentials}
        }));
        spec["credential"] = json!({"name": "cloud-credentials", "key": "cloud"});
    }
    out.push(json!({
        "apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocation",
        "metadata": meta("default", Some(&o.namespace), "operator"),
        "spec": spec
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cluster_admin_and_a_hardened_operator() -> anyhow::Result<()> {
        let objects = manifests(&Options {
            namespace: "arca-system".into(),
            image: "arca:test".into(),
            ..Default::default()
        })?;
        for o in &objects {
            if o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding" {
                assert_ne!(o["roleRef"]["name"], "cluster-admin", "{o}");
            }
        }
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("deployment");
        let c = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["securityContext"], hardened_container());
        assert!(
            c["resources"]["limits"]["memory"].is_string()
                && c["resources"]["requests"]["cpu"].is_string()
        );
        assert!(
            objects.iter().all(|o| o["kind"] != "Secret"),
            "no location asked for, no Secret"
        );
        Ok(())
    }

    #[test]
    fn people_get_arca_through_view_edit_and_admin_but_never_the_agent_s_work() -> anyhow::Result<()>
    {
        let objects = manifests(&Options {
            namespace: "arca-system".into(),
            ..Default::default()
        })?;
        let role = |name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == name)
                .cloned()
                .unwrap_or_default()
        };
        let (view, edit) = (role("arca-view"), role("arca-edit"));
        for (r, to) in [
            (&view, "view"),
            (&view, "admin"),
            (&edit, "edit"),
            (&edit, "admin"),
        ] {
            assert_eq!(
                r["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{to}")],
                "true"
            );
        }
        assert!(
            edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"].is_null()
        );
        for r in [&view, &edit] {
            let text = r["rules"].to_string();
            assert!(
                text.contains("backups") && !text.contains("podvolume"),
                "{text}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_location_with_its_credentials() -> anyhow::Result<()> {
        let objects = manifests(&Options {
            namespace: "backup".into(),
            image: "arca:test".into(),
            provider: Some("aws".into()),
            bucket: Some("b".into()),
            prefix: Some("p".into()),
            config: BTreeMap::from([("s3Url".to_string(), "http://minio:9000".to_string())]),
            credentials: Some("[default]\n".into()),
            replicas: 2,
            ..Default::default()
        })?;
        let bsl = objects
            .iter()
            .find(|o| o["kind"] == "BackupStorageLocation")
            .expect("location");
        assert_eq!(bsl["spec"]["credential"]["name"], "cloud-credentials");
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("deployment");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let policy = objects
            .iter()
            .find(|o| o["kind"] == "NetworkPolicy")
            .expect("policy");
        let ports: Vec<u64> = policy["spec"]["egress"][1]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["port"].as_u64())
            .collect();
        assert_eq!(ports, [443, 6443, 9000], "the store's port is open");
        Ok(())
    }
}
