//! Restore hooks: init containers added to restored pods, and commands run in them once
//! their container is up. Annotations (`init.hook.restore.…`, `post.hook.restore.…`, Arca's or
//! Velero's prefix) take precedence over the spec for what they define.

use std::{collections::BTreeMap, time::Duration};

use arca_api::{HookErrorMode, RestoreHooks};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use serde_json::Value;

use super::{
    DEFAULT_TIMEOUT, Selection, annotation, backup::HookResults, parse_command, parse_duration,
    parse_on_error,
};
use crate::{
    exec::{ExitStatus, run_in_pod},
    runlog::RunLog,
};

/// How long a restore waits for a hook's container when the hook does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// A command to run in a restored pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecAfterRestore {
    pub source: String,
    pub container: Option<String>,
    pub command: Vec<String>,
    pub on_error: HookErrorMode,
    pub exec_timeout: Duration,
    pub wait_timeout: Duration,
    pub wait_for_ready: bool,
}

/// The restore hooks of one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodRestoreHooks {
    /// Containers (JSON) to put in front of the pod's init containers.
    pub init_containers: Vec<Value>,
    pub exec: Vec<ExecAfterRestore>,
}

/// The restore hooks of a backed-up pod (`namespace` is its backed-up namespace).
pub fn hooks_of(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    spec: Option<&RestoreHooks>,
) -> Result<PodRestoreHooks, String> {
    let mut hooks = PodRestoreHooks::default();
    let init_annotated = annotation(annotations, "init.hook.restore", "container-image").is_some();
    let exec_annotated = annotation(annotations, "post.hook.restore", "command").is_some();
    if let Some((_, image)) = annotation(annotations, "init.hook.restore", "container-image") {
        let name = annotation(annotations, "init.hook.restore", "container-name")
            .map(|(_, v)| v)
            .unwrap_or("restore-hook");
        let mut container = serde_json::json!({"name": name, "image": image});
        if let Some((key, command)) = annotation(annotations, "init.hook.restore", "command") {
            container["command"] =
                serde_json::json!(parse_command(&key, command).map_err(|e| e.to_string())?);
        }
        hooks.init_containers.push(container);
    }
    if let Some((key, command)) = annotation(annotations, "post.hook.restore", "command") {
        let field = |f: &str| annotation(annotations, "post.hook.restore", f);
        hooks.exec.push(ExecAfterRestore {
            source: "annotation".into(),
            container: field("container").map(|(_, v)| v.to_string()),
            command: parse_command(&key, command).map_err(|e| e.to_string())?,
            on_error: match field("on-error") {
                Some((k, v)) => parse_on_error(&k, v).map_err(|e| e.to_string())?,
                None => HookErrorMode::Continue,
            },
            exec_timeout: match field("exec-timeout") {
                Some((k, v)) => parse_duration(&k, v).map_err(|e| e.to_string())?,
                None => DEFAULT_TIMEOUT,
            },
            wait_timeout: match field("wait-timeout") {
                Some((k, v)) => parse_duration(&k, v).map_err(|e| e.to_string())?,
                None => DEFAULT_WAIT,
            },
            wait_for_ready: field("wait-for-ready").is_some_and(|(_, v)| v.trim() == "true"),
        });
    }
    for resource in spec.map(|h| h.resources.as_slice()).unwrap_or_default() {
        let selection = Selection {
            included_namespaces: &resource.included_namespaces,
            excluded_namespaces: &resource.excluded_namespaces,
            included_resources: &resource.included_resources,
            excluded_resources: &resource.excluded_resources,
            label_selector: resource.label_selector.as_ref(),
        };
        if !selection
            .chooses(namespace, labels)
            .map_err(|e| format!("hook {}: {e}", resource.name))?
        {
            continue;
        }
        for hook in &resource.post_hooks {
            if let (Some(init), false) = (&hook.init, init_annotated) {
                hooks
                    .init_containers
                    .extend(init.init_containers.iter().cloned());
            }
            if let (Some(exec), false) = (&hook.exec, exec_annotated) {
                hooks.exec.push(ExecAfterRestore {
                    source: resource.name.clone(),
                    container: exec.container.clone(),
                    command: exec.command.clone(),
                    on_error: exec.on_error.unwrap_or(HookErrorMode::Continue),
                    exec_timeout: exec
                        .exec_timeout
                        .map(|d| d.as_std())
                        .unwrap_or(DEFAULT_TIMEOUT),
                    wait_timeout: exec
                        .wait_timeout
                        .map(|d| d.as_std())
                        .unwrap_or(DEFAULT_WAIT),
                    wait_for_ready: exec.wait_for_ready.unwrap_or(false),
                });
            }
        }
    }
    Ok(hooks)
}

/// Puts the init containers in front of the pod's own.
pub fn inject_init_containers(pod: &mut Value, containers: &[Value]) {
    if containers.is_empty() {
        return;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .remove("initContainers")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let all: Vec<Value> = containers.iter().cloned().chain(existing).collect();
    spec.insert("initContainers".into(), Value::Array(all));
}

/// Runs a restored pod's exec hooks, each once its container is running (or ready).
pub async fn run_exec(
    client: &Client,
    namespace: &str,
    pod: &str,
    hooks: &[ExecAfterRestore],
    log: &RunLog,
) -> HookResults {
    let mut out = HookResults::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for hook in hooks {
        out.status.hooks_attempted += 1;
        let failure = match wait_for_container(&pods, pod, hook).await {
            Err(why) => Some(why),
            Ok(container) => match run_in_pod(
                &pods,
                namespace,
                pod,
                Some(&container),
                &hook.command,
                hook.exec_timeout,
            )
            .await
            {
                Ok(output) => {
                    log.info(format!(
                        "restore hook ({}) in pod {namespace}/{pod}: {:?}; stdout: {}",
                        hook.source,
                        output.exit,
                        String::from_utf8_lossy(&output.stdout[..output.stdout.len().min(2048)])
                            .trim_end()
                    ));
                    match output.exit {
                        ExitStatus::Code(0) => None,
                        ExitStatus::Code(code) => Some(format!("exited with code {code}")),
                        ExitStatus::Failed(message) => Some(message),
                    }
                }
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(failure) = failure {
            out.status.hooks_failed += 1;
            let message = format!(
                "restore hook ({}) in pod {namespace}/{pod} failed: {failure}",
                hook.source
            );
            match hook.on_error {
                HookErrorMode::Continue => out.warnings.push((namespace.into(), message)),
                HookErrorMode::Fail => {
                    out.errors.push((namespace.into(), message));
                    break;
                }
            }
        }
    }
    out
}

/// The hook's container, once it is running (or ready); an error after `wait_timeout`.
async fn wait_for_container(
    pods: &Api<Pod>,
    pod: &str,
    hook: &ExecAfterRestore,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + hook.wait_timeout;
    loop {
        if let Ok(current) = pods.get(pod).await {
            let container = hook
                .container
                .clone()
                .or_else(|| {
                    current
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .map(|c| c.name.clone())
                })
                .unwrap_or_default();
            let state = current
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|all| all.iter().find(|c| c.name == container).cloned());
            if let Some(state) = state {
                let running = state
                    .state
                    .as_ref()
                    .and_then(|s| s.running.as_ref())
                    .is_some();
                if running && (!hook.wait_for_ready || state.ready) {
                    return Ok(container);
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            let what = if hook.wait_for_ready {
                "ready"
            } else {
                "running"
            };
            return Err(format!(
                "its container was not {what} within {:?}",
                hook.wait_timeout
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_define_init_and_exec_hooks() -> Result<(), String> {
        let annotations = map(&[
            ("init.hook.restore.velero.io/container-image", "busybox"),
            ("init.hook.restore.velero.io/container-name", "fetch"),
            (
                "init.hook.restore.velero.io/command",
                r#"["sh", "-c", "echo init"]"#,
            ),
            (
                "post.hook.restore.arca.dev/command",
                r#"["sh", "-c", "echo post"]"#,
            ),
            ("post.hook.restore.arca.dev/wait-for-ready", "true"),
            ("post.hook.restore.arca.dev/exec-timeout", "10s"),
        ]);
        let hooks = hooks_of("shop", &BTreeMap::new(), &annotations, None)?;
        assert_eq!(
            hooks.init_containers,
            [
                serde_json::json!({"name": "fetch", "image": "busybox", "command": ["sh", "-c", "echo init"]})
            ]
        );
        assert_eq!(hooks.exec.len(), 1);
        let exec = &hooks.exec[0];
        assert_eq!(
            (exec.wait_for_ready, exec.exec_timeout, exec.wait_timeout),
            (true, Duration::from_secs(10), DEFAULT_WAIT)
        );
        assert_eq!(
            exec.on_error,
            HookErrorMode::Continue,
            "restore hooks continue by default"
        );
        Ok(())
    }

    #[test]
    fn spec_hooks_apply_when_no_annotation_says_otherwise() -> Result<(), String> {
        let spec: RestoreHooks = serde_json::from_value(serde_json::json!({"resources": [{
            "name": "warm",
            "includedNamespaces": ["shop"],
            "postHooks": [
                {"init": {"initContainers": [{"name": "wait", "image": "busybox"}]}},
                {"exec": {"command": ["warm-cache"], "onError": "Fail"}}
            ]
        }]}))
        .map_err(|e| e.to_string())?;
        let hooks = hooks_of("shop", &BTreeMap::new(), &BTreeMap::new(), Some(&spec))?;
        assert_eq!(hooks.init_containers.len(), 1);
        assert_eq!(hooks.exec[0].command, ["warm-cache"]);
        assert_eq!(hooks.exec[0].on_error, HookErrorMode::Fail);
        assert_eq!(
            hooks_of("blog", &BTreeMap::new(), &BTreeMap::new(), Some(&spec))?,
            PodRestoreHooks::default()
        );
        Ok(())
    }

    #[test]
    fn init_containers_go_first() {
        let mut pod = serde_json::json!({"spec": {"initContainers": [{"name": "own"}], "containers": [{"name": "app"}]}});
        inject_init_containers(&mut pod, &[serde_json::json!({"name": "hook"})]);
        assert_eq!(
            pod["spec"]["initContainers"],
            serde_json::json!([{"name": "hook"}, {"name": "own"}])
        );
    }
}
