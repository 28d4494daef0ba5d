//! Where a pod the operator makes for the node agent runs (the data mover's pod reading a
//! snapshot, the pod through which a restore fills a claim no restored pod mounts): on a
//! node where an agent pod runs (an agent reads or writes the volume there), and, for a
//! volume pinned to a topology (a zone, a node), where the volume can be. The scheduler picks
//! among those; with `WaitForFirstConsumer` storage the new volume is provisioned there.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod};
use kube::{Api, Client, api::ListParams};
use serde_json::{Value, json};

/// The nodes on which a node agent pod runs (by the labels `arca install` gives it); None
/// when one runs on every node, the usual case, which needs no constraint.
pub async fn agent_nodes(operator: &Client) -> Result<Option<BTreeSet<String>>, String> {
    let pods: Api<Pod> = Api::all(operator.clone());
    let params = ListParams::default().labels(arca_api::labels::NODE_AGENT_POD_SELECTOR);
    let list = pods
        .list(&params)
        .await
        .map_err(|e| format!("listing the node agent's pods: {e}"))?;
    let with_agent: BTreeSet<String> = list
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.spec.and_then(|s| s.node_name))
        .collect();
    if with_agent.is_empty() {
        return Err(format!(
            "no node agent pod runs in the cluster (labels {}; `arca install --use-node-agent` installs it)",
            arca_api::labels::NODE_AGENT_POD_SELECTOR
        ));
    }
    let nodes: Api<Node> = Api::all(operator.clone());
    let all = nodes
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| format!("listing the nodes: {e}"))?;
    let everywhere = all.items.iter().all(|n| {
        n.metadata
            .name
            .as_ref()
            .is_some_and(|n| with_agent.contains(n))
    });
    Ok((!everywhere).then_some(with_agent))
}

/// The node selector terms a volume's nodes must match (its PersistentVolume's
/// `spec.nodeAffinity.required`); none when it has no such constraint or is unknown.
pub async fn volume_terms(client: &Client, volume: Option<&str>) -> Vec<Value> {
    let Some(volume) = volume else {
        return Vec::new();
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let Ok(Some(pv)) = volumes.get_opt(volume).await else {
        return Vec::new();
    };
    pv.spec
        .and_then(|s| s.node_affinity)
        .and_then(|a| a.required)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect()
}

/// A pod's `affinity`: on one of `nodes` (None: any node) and, when `terms` are given,
/// matching one of them. Terms are ORed and a term's parts ANDed, and a node name can only be
/// matched one at a time (`matchFields` takes one value), so each term is repeated per node.
/// Null when nothing constrains the pod. Pure.
pub fn affinity(nodes: Option<&BTreeSet<String>>, terms: &[Value]) -> Value {
    let on_node =
        |node: &String| json!({"key": "metadata.name", "operator": "In", "values": [node]});
    let anywhere = [json!({})];
    let base: &[Value] = match terms {
        [] => &anywhere,
        terms => terms,
    };
    let terms: Vec<Value> = match nodes {
        None if terms.is_empty() => return Value::Null,
        None => terms.to_vec(),
        Some(nodes) => base
            .iter()
            .flat_map(|term| {
                nodes.iter().map(move |node| {
                    let mut term = term.clone();
                    let mut fields = term
                        .get("matchFields")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    fields.push(on_node(node));
                    term["matchFields"] = Value::Array(fields);
                    term
                })
            })
            .collect(),
    };
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms
    }}})
}

/// The spec of a pod that holds `claim` mounted at `/data` (volume [`POD_VOLUME`]) for the
/// agent and does nothing else (`arca hold`, Arca's image): restricted (non-root, no
/// capability, no service account token, read-only root), tolerating any taint, where
/// `affinity` allows. Pure.
///
/// [`POD_VOLUME`]: crate::csi::expose::POD_VOLUME
pub fn hold_pod_spec(image: &str, claim: &str, read_only: bool, affinity: &Value) -> Value {
    use crate::csi::expose::POD_VOLUME;
    let mut mount = json!({"name": POD_VOLUME, "mountPath": "/data"});
    let mut source = json!({"claimName": claim});
    if read_only {
        mount["readOnly"] = Value::Bool(true);
        source["readOnly"] = Value::Bool(true);
    }
    json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 5,
        "affinity": affinity,
        "tolerations": [{"operator": "Exists"}],
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": "hold",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "args": ["hold"],
            "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"memory": "32Mi"},
            },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [mount],
        }],
        "volumes": [{"name": POD_VOLUME, "persistentVolumeClaim": source}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_pod_goes_to_an_agents_node_within_its_volumes_topology() {
        let terms_of = |affinity: &Value| {
            affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"]
                .clone()
        };
        // A node name is matched one at a time: the apiserver refuses two values.
        let free = affinity(Some(&nodes(&["a", "b"])), &[]);
        assert_eq!(
            terms_of(&free),
            json!([
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}
            ])
        );
        // A volume in zone x or y: each zone term also needs an agent's node.
        let zones = [
            json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["y"]}]}),
        ];
        let pinned = affinity(Some(&nodes(&["a"])), &zones);
        let terms = terms_of(&pinned);
        assert_eq!(terms.as_array().map(Vec::len), Some(2));
        for (term, zone) in terms.as_array().into_iter().flatten().zip(["x", "y"]) {
            assert_eq!(term["matchExpressions"][0]["values"], json!([zone]));
            assert_eq!(term["matchFields"][0]["values"], json!(["a"]));
        }
        // Agents everywhere: only the volume's topology, or nothing at all.
        assert_eq!(terms_of(&affinity(None, &zones)), json!(zones));
        assert_eq!(affinity(None, &[]), Value::Null);
        let pod: k8s_openapi::api::core::v1::Affinity =
            serde_json::from_value(affinity(Some(&nodes(&["a", "b"])), &zones))
                .expect("an affinity");
        assert!(pod.node_affinity.is_some());
    }
}
