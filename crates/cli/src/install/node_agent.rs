//! The node agent's objects (`arca install --use-node-agent`): its own namespace, a
//! ServiceAccount with just what moving volume data needs, a DaemonSet reading kubelet's pods
//! folder, and a NetworkPolicy with no ingress at all.

use serde_json::{Value, json};

use super::manifests::{Options, egress_ports, labels, meta, node_agent_namespace};

const COMPONENT: &str = "node-agent";
const ACCOUNT: &str = "arca-node-agent";

pub fn objects(o: &Options) -> Vec<Value> {
    let ns = o.namespace.as_str();
    let agent_ns = node_agent_namespace(ns);
    let subject = json!([{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": agent_ns}]);
    vec![
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": agent_ns, "labels": {
                "app.kubernetes.io/part-of": "arca",
                // Reading other pods' volumes needs root and a hostPath: privileged here,
                // and only here; the operator's namespace stays restricted.
                "pod-security.kubernetes.io/enforce": "privileged",
                "pod-security.kubernetes.io/warn": "baseline"
            }}
        }),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(ACCOUNT, Some(&agent_ns), COMPONENT), "automountServiceAccountToken": true}),
        // Which pod, which node, which claim: read-only, cluster-wide.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(ACCOUNT, None, COMPONENT),
            "rules": [{"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims"], "verbs": ["get"]}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(ACCOUNT, None, COMPONENT),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ACCOUNT},
            "subjects": subject
        }),
        // Its work items, their status, the locations and their Secrets (the store's
        // credentials and the repository password): in the operator's namespace only.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(ACCOUNT, Some(ns), COMPONENT),
            "rules": [
                {"apiGroups": ["arca.dev"], "resources": ["podvolumebackups", "podvolumerestores"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["arca.dev"], "resources": ["podvolumebackups/status", "podvolumerestores/status"], "verbs": ["patch", "update"]},
                {"apiGroups": ["arca.dev"], "resources": ["backupstoragelocations"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
            ]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(ACCOUNT, Some(ns), COMPONENT),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": subject
        }),
        daemon_set(o, &agent_ns),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(ACCOUNT, Some(&agent_ns), COMPONENT),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "arca", "app.kubernetes.io/component": COMPONENT}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [
                    {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                    {"ports": egress_ports(o).iter().map(|p| json!({"protocol": "TCP", "port": p})).collect::<Vec<_>>()}
                ]
            }
        }),
    ]
}

fn daemon_set(o: &Options, agent_ns: &str) -> Value {
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta(ACCOUNT, Some(agent_ns), COMPONENT),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "arca", "app.kubernetes.io/component": COMPONENT}},
            "template": {
                "metadata": {"labels": labels(COMPONENT)},
                "spec": {
                    "serviceAccountName": ACCOUNT,
                    "terminationGracePeriodSeconds": 300,
                    // Every node that runs pods, tainted or not.
                    "tolerations": [{"operator": "Exists"}],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "agent",
                        "image": o.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": [
                            "agent", "--log-format=json", "--host-pods-dir=/host_pods",
                            format!("--work-namespace={}", o.namespace)
                        ],
                        "env": [field("NODE_NAME", "spec.nodeName")],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"cpu": "2", "memory": "512Mi"}
                        },
                        // Root, to read and write files of any owner; only the capabilities
                        // that needs, and nothing else of root's.
                        "securityContext": {
                            "runAsUser": 0,
                            "runAsNonRoot": false,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "privileged": false,
                            "capabilities": {
                                "drop": ["ALL"],
                                "add": ["DAC_READ_SEARCH", "DAC_OVERRIDE", "CHOWN", "FOWNER", "FSETID"]
                            },
                            "seccompProfile": {"type": "RuntimeDefault"}
                        },
                        "volumeMounts": [
                            {"name": "host-pods", "mountPath": "/host_pods", "mountPropagation": "HostToContainer"},
                            {"name": "tmp", "mountPath": "/tmp"}
                        ]
                    }],
                    "volumes": [
                        {"name": "host-pods", "hostPath": {"path": o.host_pods_dir(), "type": "Directory"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}
                    ]
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_apart_least_privileged_and_unreachable() {
        let o = Options {
            namespace: "backup".into(),
            image: "img".into(),
            use_node_agent: true,
            ..Options::default()
        };
        let objects = objects(&o);
        let ds = objects
            .iter()
            .find(|v| v["kind"] == "DaemonSet")
            .expect("daemon set");
        assert_eq!(ds["metadata"]["namespace"], "backup-node-agent");
        let container = &ds["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["securityContext"]["privileged"], false);
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"][0],
            "ALL"
        );
        let role = objects.iter().find(|v| v["kind"] == "Role").expect("role");
        assert_eq!(role["metadata"]["namespace"], "backup");
        let cluster = objects
            .iter()
            .find(|v| v["kind"] == "ClusterRole")
            .expect("cluster role");
        assert_eq!(cluster["rules"][0]["verbs"], json!(["get"]));
        let policy = objects
            .iter()
            .find(|v| v["kind"] == "NetworkPolicy")
            .expect("policy");
        assert_eq!(policy["spec"]["ingress"], json!([]));
        // The operator finds the agents' nodes by this selector (the data mover's pods).
        let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
        for pair in arca_api::labels::NODE_AGENT_POD_SELECTOR.split(',') {
            let (key, value) = pair.split_once('=').expect("key=value");
            assert_eq!(pod_labels[key], value, "{pod_labels}");
        }
    }
}
