//! Strategic merge patches (Kubernetes' own patch format) on Kubernetes' built-in kinds.
//!
//! Maps merge key by key (`null` deletes a key). Lists that Kubernetes merges element by
//! element (its `patchStrategy: merge`) are merged by their merge key (containers and
//! volumes by `name`, a container's ports by `containerPort`, a Service's by `port`...);
//! `finalizers` are a set; every other list is replaced whole. The directives `$patch:
//! replace|delete|merge`, `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
//! `$setElementOrder/<field>` (an order hint: ignored) are understood. Merged lists keep the
//! order Kubernetes (and so Velero) gives them: the patch's elements in its order, the
//! original's others among them.
//!
//! The merge keys are those of the built-in types' Go definitions; custom resources have
//! none to read, so (as with Velero, which refuses kinds outside its scheme) they are
//! refused: use a merge patch for them.

use serde_json::{Map, Value};

/// How a list field is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    Replace,
    /// Elements matched by this key.
    MergeBy(&'static str),
    /// A set of primitives.
    Union,
}

/// Groups whose kinds Kubernetes defines (and so whose merge keys are known here).
pub fn is_built_in(group: &str) -> bool {
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}

/// The strategy of list `field`, whose parent field is `parent` (None: the root), in an
/// object of `kind`.
fn strategy(kind: &str, parent: Option<&str>, field: &str) -> ListStrategy {
    use ListStrategy::{MergeBy, Replace, Union};
    match (parent, field) {
        (Some("metadata"), "finalizers") => Union,
        (Some("metadata"), "ownerReferences") => MergeBy("uid"),
        (_, "containers" | "initContainers" | "ephemeralContainers") => MergeBy("name"),
        (_, "volumes" | "imagePullSecrets" | "resourceClaims" | "env") => MergeBy("name"),
        (_, "volumeMounts") => MergeBy("mountPath"),
        (_, "volumeDevices") => MergeBy("devicePath"),
        (_, "hostAliases") => MergeBy("ip"),
        (_, "topologySpreadConstraints") => MergeBy("topologyKey"),
        (Some("spec"), "ports") if kind == "Service" => MergeBy("port"),
        (Some("containers" | "initContainers" | "ephemeralContainers"), "ports") => {
            MergeBy("containerPort")
        }
        (None, "secrets") if kind == "ServiceAccount" => MergeBy("name"),
        (Some("status"), "conditions") => MergeBy("type"),
        _ => Replace,
    }
}

/// Applies `patch` (a JSON object) to `object`, of `kind`.
pub fn apply(kind: &str, object: &mut Value, patch: &Value) -> Result<(), String> {
    let (Some(target), Some(patch)) = (object.as_object_mut(), patch.as_object()) else {
        return Err("a strategic merge patch must be an object".into());
    };
    merge_map(kind, None, target, patch)
}

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get("$patch").and_then(Value::as_str)
}

/// `value` without the directives it may hold (what a patch adds must not carry them).
fn strip(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
        other => other.clone(),
    }
}

fn merge_map(
    kind: &str,
    parent: Option<&str>,
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), String> {
    match directive(patch) {
        Some("replace") => {
            if let Value::Object(replaced) = strip(&Value::Object(patch.clone())) {
                *target = replaced;
            }
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown directive $patch: {other}")),
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let Some(remove) = value.as_array() else {
                return Err(format!("{key} must be a list"));
            };
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            if !matches!(key.as_str(), "$patch" | "$retainKeys")
                && !key.starts_with("$setElementOrder/")
            {
                return Err(format!("unknown directive {key}"));
            }
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                if directive(inner) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                match target.get_mut(key) {
                    Some(Value::Object(existing)) => {
                        merge_map(kind, Some(key.as_str()), existing, inner)?
                    }
                    _ => {
                        target.insert(key.clone(), strip(value));
                    }
                }
            }
            Value::Array(items) => {
                let merged = match (strategy(kind, parent, key), target.get_mut(key)) {
                    (ListStrategy::MergeBy(merge_key), Some(Value::Array(existing))) => {
                        merge_list(kind, key, merge_key, existing, items)?;
                        true
                    }
                    (ListStrategy::Union, Some(Value::Array(existing))) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                        true
                    }
                    _ => false,
                };
                if !merged {
                    let replaced: Vec<Value> = items
                        .iter()
                        .filter(|i| i.as_object().is_none_or(|m| directive(m).is_none()))
                        .map(strip)
                        .collect();
                    target.insert(key.clone(), Value::Array(replaced));
                }
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let Some(keep) = keep.as_array() else {
            return Err("$retainKeys must be a list".into());
        };
        target.retain(|k, _| keep.iter().any(|v| v.as_str() == Some(k)));
    }
    Ok(())
}

fn merge_list(
    kind: &str,
    field: &str,
    merge_key: &str,
    target: &mut Vec<Value>,
    patch: &[Value],
) -> Result<(), String> {
    if patch
        .iter()
        .any(|i| i.as_object().and_then(directive) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|i| i.as_object().and_then(directive) != Some("replace"))
            .map(strip)
            .collect();
        return Ok(());
    }
    let original = target.clone();
    for item in patch {
        let Some(map) = item.as_object() else {
            return Err(format!(
                "{field} holds objects merged by {merge_key}: the patch's element {item} is not one"
            ));
        };
        let Some(key) = map.get(merge_key) else {
            return Err(format!(
                "an element of {field} in the patch has no {merge_key:?}, its merge key"
            ));
        };
        let position = target.iter().position(|t| t.get(merge_key) == Some(key));
        match (directive(map), position) {
            (Some("delete"), Some(at)) => {
                target.remove(at);
            }
            (Some("delete"), None) => {}
            (_, Some(at)) => {
                if let Some(existing) = target[at].as_object_mut() {
                    merge_map(kind, Some(field), existing, map)?;
                }
            }
            (_, None) => target.push(strip(item)),
        }
    }
    let patch_keys: Vec<&Value> = patch
        .iter()
        .filter_map(Value::as_object)
        .filter(|m| directive(m) != Some("delete"))
        .filter_map(|m| m.get(merge_key))
        .collect();
    *target = in_kubernetes_order(std::mem::take(target), merge_key, &patch_keys, &original);
    Ok(())
}

/// The merged elements of a list in the order Kubernetes' strategic merge gives them
/// (apimachinery's `normalizeElementOrder`): the patch's elements in the patch's order,
/// with the elements only the original has put back among them in the original's order,
/// each before the first patch element the original holds after it.
fn in_kubernetes_order(
    merged: Vec<Value>,
    merge_key: &str,
    patch_keys: &[&Value],
    original: &[Value],
) -> Vec<Value> {
    let in_original = |item: &Value| {
        let key = item.get(merge_key)?;
        original.iter().position(|o| o.get(merge_key) == Some(key))
    };
    let in_patch = |item: &Value| {
        let key = item.get(merge_key)?;
        patch_keys.iter().position(|k| *k == key)
    };
    let (mut from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| in_patch(item).is_some());
    from_patch.sort_by_key(|item| in_patch(item));
    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (in_original(l), in_original(r)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
            "spec": {"replicas": 3, "template": {"spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80, "name": "http"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "envoy:1"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "tolerations": [{"key": "x"}]
            }}}
        })
    }

    #[test]
    fn containers_env_and_ports_merge_by_key_other_lists_are_replaced() {
        let mut d = deployment();
        let patch = json!({"metadata": {"labels": {"tier": null}, "finalizers": ["b", "a"]},
            "spec": {"replicas": 1, "template": {"spec": {
            "containers": [{"name": "web", "image": "nginx:1.27",
                            "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 80, "name": "web"}]},
                           {"name": "sidecar", "$patch": "delete"},
                           {"name": "new", "image": "busybox"}],
            "tolerations": [{"key": "y"}]
        }}}});
        apply("Deployment", &mut d, &patch).expect("patched");
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(d["metadata"]["finalizers"], json!(["a", "b"]));
        let names: Vec<&str> = spec["containers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["web", "new"]);
        assert_eq!(spec["containers"][0]["image"], "nginx:1.27");
        assert_eq!(
            spec["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            spec["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "web"}])
        );
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "y"}]),
            "no merge key: replaced"
        );
        assert_eq!(
            spec["volumes"],
            json!([{"name": "data", "emptyDir": {}}]),
            "untouched"
        );
    }

    #[test]
    fn directives_replace_delete_and_retain() {
        let mut d = deployment();
        let patch = json!({"spec": {"template": {"spec": {
            "volumes": [{"$patch": "replace"}, {"name": "cache", "emptyDir": {}}],
            "containers": [{"name": "web", "$deleteFromPrimitiveList/args": ["x"]}]
        }}}, "metadata": {"labels": {"$patch": "replace", "only": "this"}}});
        apply("Deployment", &mut d, &patch).expect("patched");
        assert_eq!(
            d["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "cache", "emptyDir": {}}])
        );
        assert_eq!(d["metadata"]["labels"], json!({"only": "this"}));
        let bad = json!({"spec": {"$patch": "explode"}});
        assert!(
            apply("Deployment", &mut d, &bad)
                .expect_err("refused")
                .contains("unknown directive")
        );
        let keyless = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(
            apply("Deployment", &mut d, &keyless)
                .expect_err("refused")
                .contains("merge key")
        );
    }

    #[test]
    fn merged_lists_keep_the_order_kubernetes_gives_them() {
        let names = |d: &Value| -> Vec<String> {
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["name"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        let env_patch = |env: Value| json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": env}]}}}});
        let mut d = deployment();
        apply(
            "Deployment",
            &mut d,
            &env_patch(json!([{"name": "C", "value": "3"}])),
        )
        .expect("patched");
        assert_eq!(names(&d), ["C", "A", "B"], "a new element comes first");
        let mut d = deployment();
        let patch = env_patch(json!([{"name": "B", "value": "20"}, {"name": "C"}]));
        apply("Deployment", &mut d, &patch).expect("patched");
        assert_eq!(
            names(&d),
            ["A", "B", "C"],
            "A, only in the original, stays before B"
        );
        let mut d = deployment();
        let patch = env_patch(json!([{"name": "B"}, {"name": "A", "value": "9"}]));
        apply("Deployment", &mut d, &patch).expect("patched");
        assert_eq!(names(&d), ["B", "A"], "the patch's order");
    }

    #[test]
    fn service_ports_merge_by_port() {
        let mut svc = json!({"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        apply(
            "Service",
            &mut svc,
            &json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}),
        )
        .expect("patched");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "targetPort": 8080, "nodePort": 30080}, {"port": 443}])
        );
    }

    #[test]
    fn built_in_groups() {
        assert!(is_built_in(""));
        assert!(is_built_in("apps"));
        assert!(is_built_in("networking.k8s.io"));
        assert!(!is_built_in("example.com"));
    }
}
