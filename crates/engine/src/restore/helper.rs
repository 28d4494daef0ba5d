//! The restore helper init container (`arca-restore-wait`): added first to every restored
//! pod whose volumes get data from the node agent, so the pod's own containers start only
//! once that data is in place (see `arca_api::restore_helper`). Pure: edits the pod's JSON.

use arca_api::restore_helper::{INIT_CONTAINER_NAME, SUBCOMMAND, mount_path};
use serde_json::{Value, json};

/// The image and restore a helper container is made for.
#[derive(Clone, Debug)]
pub struct RestoreHelper {
    /// The image of Arca itself (the operator's own image).
    pub image: String,
    /// The Restore's uid: the agent's markers are named after it.
    pub restore_uid: String,
}

impl RestoreHelper {
    /// The init container that waits for `volumes` (names of the pod's volumes). It runs
    /// as the pod does (its `runAsUser`/`fsGroup`, else the image's user 65532), so it can
    /// look into volumes the workload owns; non-root unless the pod itself runs as root
    /// (a restricted namespace then still admits the pod).
    pub fn container(&self, volumes: &[&str], pod_runs_as_root: bool) -> Value {
        let mut args = vec![
            SUBCOMMAND.to_string(),
            format!("--restore-uid={}", self.restore_uid),
        ];
        args.extend(volumes.iter().map(|v| mount_path(v)));
        json!({
            "name": INIT_CONTAINER_NAME,
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "volumeMounts": volumes
                .iter()
                .map(|v| json!({"name": v, "mountPath": mount_path(v)}))
                .collect::<Vec<_>>(),
            "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"cpu": "100m", "memory": "64Mi"}
            },
            "securityContext": {
                "runAsNonRoot": !pod_runs_as_root,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "privileged": false,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}
            }
        })
    }

    /// Puts the helper first among the pod's init containers (replacing one left from an
    /// earlier restore of the same pod). Volumes the pod does not declare are left out.
    pub fn inject(&self, pod: &mut Value, volumes: &[&str]) {
        let declared: Vec<&str> = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter_map(|v| v["name"].as_str()).collect())
            .unwrap_or_default();
        let volumes: Vec<&str> = volumes
            .iter()
            .copied()
            .filter(|v| declared.contains(v))
            .collect();
        if volumes.is_empty() {
            return;
        }
        let runs_as_root = pod.pointer("/spec/securityContext/runAsUser") == Some(&json!(0));
        let container = self.container(&volumes, runs_as_root);
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let existing = spec
            .remove("initContainers")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["name"] != INIT_CONTAINER_NAME);
        let all: Vec<Value> = std::iter::once(container).chain(existing).collect();
        spec.insert("initContainers".into(), Value::Array(all));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> RestoreHelper {
        RestoreHelper {
            image: "arca:1".into(),
            restore_uid: "uid-1".into(),
        }
    }

    #[test]
    fn goes_first_mounts_each_volume_and_names_the_restore() {
        let mut pod = json!({"spec": {
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}],
            "initContainers": [{"name": "user-init"}, {"name": INIT_CONTAINER_NAME, "image": "old"}],
            "containers": [{"name": "app"}]
        }});
        helper().inject(&mut pod, &["data", "gone"]);
        let inits = pod["spec"]["initContainers"].as_array().expect("inits");
        assert_eq!(
            inits.len(),
            2,
            "the old helper is replaced, the user's kept: {inits:?}"
        );
        assert_eq!(inits[0]["name"], INIT_CONTAINER_NAME);
        assert_eq!(inits[0]["image"], "arca:1");
        assert_eq!(inits[1]["name"], "user-init");
        assert_eq!(
            inits[0]["args"],
            json!(["restore-helper", "--restore-uid=uid-1", "/restores/data"])
        );
        assert_eq!(
            inits[0]["volumeMounts"],
            json!([{"name": "data", "mountPath": "/restores/data"}])
        );
        assert_eq!(inits[0]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(inits[0]["securityContext"]["readOnlyRootFilesystem"], true);
        assert!(
            inits[0]["securityContext"]["runAsUser"].is_null(),
            "runs as the pod does"
        );
    }

    #[test]
    fn a_pod_running_as_root_is_not_refused_its_helper() {
        let mut pod = json!({"spec": {
            "securityContext": {"runAsUser": 0},
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "app"}]
        }});
        helper().inject(&mut pod, &["data"]);
        assert_eq!(
            pod["spec"]["initContainers"][0]["securityContext"]["runAsNonRoot"],
            false
        );
    }

    #[test]
    fn a_pod_without_those_volumes_is_left_alone() {
        let mut pod = json!({"spec": {"containers": [{"name": "app"}]}});
        let before = pod.clone();
        helper().inject(&mut pod, &["data"]);
        assert_eq!(pod, before);
    }
}
