//! Backup hooks: which pods get which commands, and running them around the backup.
//! Pre hooks of all chosen pods run before any item is read, post hooks after everything
//! (items and volume data) is written. Pods run concurrently up to a bound; a pod's hooks
//! run in order, and a failing `Fail` hook stops that pod's pre hooks and leaves its items
//! out of the backup.

use std::collections::BTreeSet;

use arca_api::{BackupHooks, HookErrorMode, HookStatus};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt, api::ListParams};

use super::{Hook, Selection, hook_from_annotations};
use crate::{
    exec::{ExitStatus, run_in_pod},
    filters::{LabelFilter, NamespaceFilter, excluded_by_label},
    runlog::RunLog,
};

/// Pods whose hooks run at once.
const POD_CONCURRENCY: usize = 8;
/// Output of a hook kept in the backup's log, per stream.
const LOGGED_OUTPUT: usize = 2048;

/// The hooks of one pod.
#[derive(Clone, Debug)]
pub struct PodHooks {
    pub namespace: String,
    pub name: String,
    /// The pod's first container: where a hook naming none runs.
    pub first_container: Option<String>,
    pub running: bool,
    pub pre: Vec<Hook>,
    pub post: Vec<Hook>,
}

/// What running hooks did.
#[derive(Clone, Debug, Default)]
pub struct HookResults {
    pub status: HookStatus,
    /// Pods whose `Fail` pre hook failed: their items are left out.
    pub failed_pods: BTreeSet<(String, String)>,
    /// (namespace, message)
    pub errors: Vec<(String, String)>,
    pub warnings: Vec<(String, String)>,
}

/// The hooks of every pod of the chosen namespaces that the backup takes.
pub async fn plan(
    client: &Client,
    namespaces: &BTreeSet<String>,
    labels: &LabelFilter,
    namespace_filter: &NamespaceFilter,
    spec: Option<&BackupHooks>,
) -> Result<(Vec<PodHooks>, Vec<(String, String)>), kube::Error> {
    let mut planned = Vec::new();
    let mut warnings = Vec::new();
    for namespace in namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let mut params = ListParams::default().limit(500);
        loop {
            let page = pods.list(&params).await?;
            for pod in &page.items {
                let pod_labels = pod.labels();
                if !namespace_filter.matches(namespace)
                    || !labels.matches(pod_labels)
                    || excluded_by_label(pod_labels)
                {
                    continue;
                }
                match hooks_of(pod, spec) {
                    Ok(Some(hooks)) => planned.push(hooks),
                    Ok(None) => {}
                    Err(problem) => warnings.push((
                        namespace.clone(),
                        format!("pod {}: {problem}; its hooks are not run", pod.name_any()),
                    )),
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok((planned, warnings))
}

/// A pod's hooks: for each phase, its annotations' hook if it has one, else the spec hooks
/// that choose it.
pub fn hooks_of(pod: &Pod, spec: Option<&BackupHooks>) -> Result<Option<PodHooks>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let annotations = pod.annotations();
    let mut pre: Vec<Hook> =
        hook_from_annotations(annotations, "pre.hook.backup", HookErrorMode::Fail)
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    let mut post: Vec<Hook> =
        hook_from_annotations(annotations, "post.hook.backup", HookErrorMode::Fail)
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
    let (pre_annotated, post_annotated) = (!pre.is_empty(), !post.is_empty());
    for resource in spec.map(|h| h.resources.as_slice()).unwrap_or_default() {
        let selection = Selection {
            included_namespaces: &resource.included_namespaces,
            excluded_namespaces: &resource.excluded_namespaces,
            included_resources: &resource.included_resources,
            excluded_resources: &resource.excluded_resources,
            label_selector: resource.label_selector.as_ref(),
        };
        if !selection
            .chooses(&namespace, pod.labels())
            .map_err(|e| format!("hook {}: {e}", resource.name))?
        {
            continue;
        }
        if !pre_annotated {
            pre.extend(
                resource
                    .pre
                    .iter()
                    .map(|h| Hook::from_exec(&resource.name, &h.exec)),
            );
        }
        if !post_annotated {
            post.extend(
                resource
                    .post
                    .iter()
                    .map(|h| Hook::from_exec(&resource.name, &h.exec)),
            );
        }
    }
    if pre.is_empty() && post.is_empty() {
        return Ok(None);
    }
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let first_container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone());
    Ok(Some(PodHooks {
        namespace,
        name: pod.name_any(),
        first_container,
        running,
        pre,
        post,
    }))
}

/// Which hooks of a pod to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pre,
    Post,
}

/// Runs one phase of the hooks of `pods` (skipping `left_out` pods): the first `in_order`
/// pods one after another, in order (`orderedResources`), then the others concurrently.
pub async fn run(
    client: &Client,
    pods: &[PodHooks],
    (phase, in_order): (Phase, usize),
    left_out: &BTreeSet<(String, String)>,
    log: &RunLog,
) -> HookResults {
    let chosen = |pods: &[PodHooks]| -> Vec<PodHooks> {
        pods.iter()
            .filter(|p| !left_out.contains(&(p.namespace.clone(), p.name.clone())))
            .cloned()
            .collect()
    };
    let (ordered, others) = pods.split_at(in_order.min(pods.len()));
    let mut runs = Vec::new();
    for pod in chosen(ordered) {
        runs.push(run_pod(client, &pod, phase, log).await);
    }
    runs.extend(
        futures::stream::iter(chosen(others))
            .map(|pod| async move { run_pod(client, &pod, phase, log).await })
            .buffer_unordered(POD_CONCURRENCY)
            .collect::<Vec<HookResults>>()
            .await,
    );
    let mut total = HookResults::default();
    for r in runs {
        total.status.hooks_attempted += r.status.hooks_attempted;
        total.status.hooks_failed += r.status.hooks_failed;
        total.failed_pods.extend(r.failed_pods);
        total.errors.extend(r.errors);
        total.warnings.extend(r.warnings);
    }
    total
}

async fn run_pod(client: &Client, pod: &PodHooks, phase: Phase, log: &RunLog) -> HookResults {
    let mut out = HookResults::default();
    let hooks = match phase {
        Phase::Pre => &pod.pre,
        Phase::Post => &pod.post,
    };
    if hooks.is_empty() {
        return out;
    }
    let label = if phase == Phase::Pre { "pre" } else { "post" };
    if !pod.running {
        out.warnings.push((
            pod.namespace.clone(),
            format!(
                "pod {} is not Running: its {label} hooks were not run",
                pod.name
            ),
        ));
        return out;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    for hook in hooks {
        out.status.hooks_attempted += 1;
        let container = hook.container.as_deref().or(pod.first_container.as_deref());
        let outcome = run_in_pod(
            &pods,
            &pod.namespace,
            &pod.name,
            container,
            &hook.command,
            hook.timeout,
        )
        .await;
        let failure = match outcome {
            Ok(output) => {
                log.info(format!(
                    "{label} hook ({}) in pod {}/{}: {:?}; stdout: {}; stderr: {}",
                    hook.source,
                    pod.namespace,
                    pod.name,
                    output.exit,
                    clip(&output.stdout),
                    clip(&output.stderr)
                ));
                match output.exit {
                    ExitStatus::Code(0) => None,
                    ExitStatus::Code(code) => Some(format!("exited with code {code}")),
                    ExitStatus::Failed(message) => Some(message),
                }
            }
            Err(e) => Some(e.to_string()),
        };
        let Some(failure) = failure else { continue };
        out.status.hooks_failed += 1;
        let message = format!(
            "{label} hook ({}) in pod {}/{} failed: {failure}",
            hook.source, pod.namespace, pod.name
        );
        match hook.on_error {
            HookErrorMode::Continue => out.warnings.push((pod.namespace.clone(), message)),
            HookErrorMode::Fail => {
                if phase == Phase::Pre {
                    out.errors.push((
                        pod.namespace.clone(),
                        format!("{message}; the pod's items are not backed up"),
                    ));
                    out.failed_pods
                        .insert((pod.namespace.clone(), pod.name.clone()));
                } else {
                    out.errors.push((pod.namespace.clone(), message));
                }
                break;
            }
        }
    }
    out
}

fn clip(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(LOGGED_OUTPUT)]);
    let text = text.trim_end().replace('\n', "\\n");
    if bytes.len() > LOGGED_OUTPUT {
        format!("{text}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pod(annotations: serde_json::Value, labels: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-0", "namespace": "shop", "annotations": annotations, "labels": labels},
            "spec": {"containers": [{"name": "db", "image": "postgres"}]},
            "status": {"phase": "Running"}
        }))
        .expect("pod")
    }

    fn spec() -> BackupHooks {
        serde_json::from_value(serde_json::json!({"resources": [{
            "name": "freeze",
            "includedNamespaces": ["shop"],
            "labelSelector": {"matchLabels": {"app": "db"}},
            "pre": [{"exec": {"command": ["freeze"], "onError": "Continue", "timeout": "5s"}}],
            "post": [{"exec": {"command": ["thaw"]}}]
        }]}))
        .expect("hooks")
    }

    #[test]
    fn spec_hooks_choose_pods_by_selector() -> Result<(), String> {
        let hooks = hooks_of(
            &pod(serde_json::json!({}), serde_json::json!({"app": "db"})),
            Some(&spec()),
        )?
        .expect("hooks");
        assert_eq!(hooks.pre[0].command, ["freeze"]);
        assert_eq!(hooks.pre[0].on_error, HookErrorMode::Continue);
        assert_eq!(hooks.pre[0].timeout, Duration::from_secs(5));
        assert_eq!(
            hooks.post[0].on_error,
            HookErrorMode::Fail,
            "Fail by default"
        );
        assert_eq!(
            hooks.first_container.as_deref(),
            Some("db"),
            "where hooks naming no container run"
        );
        assert!(
            hooks_of(
                &pod(serde_json::json!({}), serde_json::json!({"app": "web"})),
                Some(&spec())
            )?
            .is_none()
        );
        Ok(())
    }

    #[test]
    fn annotations_take_precedence_per_phase() -> Result<(), String> {
        let annotated = pod(
            serde_json::json!({"pre.hook.backup.velero.io/command": "[\"sync\"]"}),
            serde_json::json!({"app": "db"}),
        );
        let hooks = hooks_of(&annotated, Some(&spec()))?.expect("hooks");
        assert_eq!(hooks.pre.len(), 1);
        assert_eq!(
            hooks.pre[0].command,
            ["sync"],
            "the annotation replaces the spec's pre hooks"
        );
        assert_eq!(
            hooks.post[0].command,
            ["thaw"],
            "the spec's post hooks still apply"
        );
        Ok(())
    }
}
