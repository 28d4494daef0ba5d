//! Running a restore: see the module documentation of `restore`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, RwLock},
};

use arca_api::{ExistingResourcePolicy, ItemOutcomes};
use arca_store::{
    Layout, ObjectStore,
    archive::{
        ArchivedItem, BackupMetadata, FORMAT_VERSION, FrameRef, IndexEntry, JsonlWriter, Results,
        read_frame, read_index, verify_object,
    },
};
use bytes::Bytes;
use futures::StreamExt;
use kube::Client;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{
    RestoreError, RestoreOutcome, RestoreRequest, RestoreSettings,
    apply::{Applied, Applier, Outcome, Target},
    order::{Owner, Workloads, recreated_by_controller},
    plan::{Plan, PlanFilters},
    readiness,
    transform::{Transform, label_value},
    validate,
};
use arca_api::HookStatus;
use arca_store::archive::{VolumeSnapshot, VolumeSnapshots};

use crate::pod_volumes::{
    self,
    restore::{PodToFill, RestoreRun},
};

use crate::{
    catalogue::{Catalogue, ResourceType},
    filters::{ClusterResources, LabelFilter, NamespaceFilter, ResourceFilter},
    hooks::{
        backup::HookResults,
        restore::{ExecAfterRestore, PodRestoreHooks, hooks_of, inject_init_containers, run_exec},
    },
    progress::Progress,
    runlog::RunLog,
};

/// Namespaces checked at once before and after the namespace tier.
const NAMESPACE_CHECKS: usize = 16;

/// One line of `restores/<name>/items.jsonl.zst`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemRecord {
    resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_namespace: Option<String>,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// An item to try again once the rest is in.
struct Retry {
    entry: IndexEntry,
    object: Value,
    status: Option<Value>,
}

struct Run<'a> {
    client: Client,
    store: &'a dyn ObjectStore,
    backup: String,
    catalogue: RwLock<Arc<Catalogue>>,
    transform: Transform,
    applier: Applier,
    labels: LabelFilter,
    status_of: Box<dyn Fn(&str) -> bool + Send + Sync>,
    hooks: Option<arca_api::RestoreHooks>,
    /// Restored pods with exec hooks: (namespace, pod, hooks).
    pending_hooks: Mutex<Vec<(String, String, Vec<ExecAfterRestore>)>>,
    /// The pod volume snapshots of the backup (`volumes.json`).
    volume_snapshots: VolumeSnapshots,
    /// Recreated pods whose volumes wait for their data.
    pending_volumes: Mutex<Vec<PodToFill>>,
    /// `restorePVs`: fill the recreated pods' volumes.
    restore_volumes: bool,
    /// Added to pods whose volumes are filled, when there is an image for it.
    restore_helper: Option<super::helper::RestoreHelper>,
    workloads: Workloads,
    namespaces: BTreeSet<String>,
    /// Backed-up namespaces whose Namespace item is in the backup but failed (unreadable,
    /// refused): never created bare in its place.
    failed_namespaces: Mutex<BTreeSet<String>>,
    cluster: ClusterResources,
    related_roles: BTreeSet<String>,
    counts: Mutex<ItemOutcomes>,
    results: Mutex<Results>,
    items: mpsc::Sender<ItemRecord>,
    retries: Mutex<Vec<Retry>>,
    progress: Arc<Progress>,
    log: RunLog,
}

/// Restores backup `request.backup_name` (whose `backup.json` is `metadata`) read from
/// `store`; the per-item outcomes and results go to `output` (the same store, or a
/// `DiscardStore` when the location is ReadOnly).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    store: &dyn ObjectStore,
    output: &dyn ObjectStore,
    request: &RestoreRequest,
    metadata: &BackupMetadata,
    settings: RestoreSettings,
    progress: Arc<Progress>,
    log: RunLog,
) -> Result<RestoreOutcome, RestoreError> {
    let spec = &request.spec;
    let tenant = request.tenant.as_deref();
    let problems = validate(spec, tenant);
    if !problems.is_empty() {
        return Err(RestoreError::Invalid(problems));
    }
    if metadata.format_version != FORMAT_VERSION {
        return Err(RestoreError::Format {
            backup: request.backup_name.clone(),
            found: metadata.format_version.clone(),
            known: FORMAT_VERSION.into(),
        });
    }
    let corrupt = |source| RestoreError::Corrupt {
        backup: request.backup_name.clone(),
        source,
    };
    let stats = &metadata.stats;
    verify_object(
        store,
        &Layout::backup_index(&request.backup_name),
        stats.index_bytes,
        &stats.index_sha256,
    )
    .await
    .map_err(corrupt)?;
    verify_object(
        store,
        &Layout::backup_archive(&request.backup_name),
        stats.archive_bytes,
        &stats.archive_sha256,
    )
    .await
    .map_err(corrupt)?;
    log.info(format!(
        "backup {} verified: {} items, checksums match",
        request.backup_name, stats.items
    ));

    let volume_snapshots = arca_store::archive::read_volume_snapshots(store, &request.backup_name)
        .await
        .map_err(corrupt)?;
    let mut entries = Vec::with_capacity(stats.items as usize);
    let mut index = read_index(store, &request.backup_name).await?;
    while let Some(entry) = index.recv().await {
        entries.push(entry.map_err(corrupt)?);
    }
    let catalogue = Catalogue::discover(&client)
        .await
        .map_err(RestoreError::Discovery)?;
    let known = catalogue.with_types(entries.iter().map(type_of_entry));
    let resources = ResourceFilter::new(&known, &spec.included_resources, &spec.excluded_resources);
    let status_spec = spec.restore_status.clone().unwrap_or_default();
    let status_filter = ResourceFilter::new(
        &known,
        &status_spec.included_resources,
        &status_spec.excluded_resources,
    );
    let status_wanted = !status_spec.included_resources.is_empty();
    let namespaces = NamespaceFilter::new(&spec.included_namespaces, &spec.excluded_namespaces)
        .map_err(|e| RestoreError::Invalid(vec![e.to_string()]))?;
    let cluster = match tenant {
        Some(_) => ClusterResources::None,
        None => ClusterResources::decide(spec.include_cluster_resources, &namespaces),
    };
    let transform = Transform {
        backup_name: request.backup_name.clone(),
        restore_name: request.name.clone(),
        namespace_mapping: spec.namespace_mapping.clone(),
        preserve_node_ports: spec.preserve_node_ports.unwrap_or(false),
        restored_volumes: BTreeSet::new(),
    };
    let crd_types: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.group_resource() == "customresourcedefinitions.apiextensions.k8s.io")
        .map(|e| e.name.clone())
        .collect();
    let plan = Plan::build(
        entries,
        &PlanFilters {
            namespaces: &namespaces,
            resource_matches: &|gr| resources.matches(gr),
            cluster,
            tenant,
            target: &|ns| transform.target_namespace(ns).to_string(),
            crd_types: &crd_types,
        },
    );
    progress.add_total(plan.total + plan.skipped.len() as u64);
    log.info(format!(
        "restoring {} items of {} namespaces{}; {} cluster-scoped items left out (includeClusterResources)",
        plan.total,
        plan.namespaces.len(),
        if spec.dry_run { " as a dry run" } else { "" },
        plan.cluster_left_out
    ));
    for name in &resources.unknown {
        log.warn(format!(
            "resource {name:?} is in neither the backup nor the cluster; ignored"
        ));
    }

    let mut items_writer =
        JsonlWriter::create(output, &Layout::restore_items(&request.name)).await?;
    let (items_tx, mut items_rx) = mpsc::channel::<ItemRecord>(1024);
    let items_task = tokio::spawn(async move {
        while let Some(record) = items_rx.recv().await {
            if let Err(e) = items_writer.push(&record).await {
                items_writer.abort().await;
                return Err(e);
            }
        }
        items_writer.finish().await
    });

    let run = Run {
        client: client.clone(),
        store,
        backup: request.backup_name.clone(),
        catalogue: RwLock::new(Arc::new(catalogue)),
        transform: Transform {
            restored_volumes: plan.volumes(),
            ..transform
        },
        applier: Applier {
            client: client.clone(),
            dry_run: spec.dry_run,
            policy: spec
                .existing_resource_policy
                .unwrap_or(ExistingResourcePolicy::None),
        },
        labels: LabelFilter::new(spec.label_selector.as_ref(), &spec.or_label_selectors)
            .map_err(|e| RestoreError::Invalid(vec![e.to_string()]))?,
        status_of: Box::new(move |gr| status_wanted && status_filter.matches(gr)),
        hooks: spec.hooks.clone(),
        pending_hooks: Mutex::new(Vec::new()),
        volume_snapshots,
        pending_volumes: Mutex::new(Vec::new()),
        restore_volumes: spec.restore_p_vs.unwrap_or(true),
        restore_helper: match (&request.restore_helper_image, &request.volumes) {
            (Some(image), Ok(_)) if spec.restore_p_vs.unwrap_or(true) && !spec.dry_run => {
                Some(super::helper::RestoreHelper {
                    image: image.clone(),
                    restore_uid: request.uid.clone(),
                })
            }
            _ => None,
        },
        workloads: plan.workloads.clone(),
        namespaces: plan.namespaces.clone(),
        failed_namespaces: Mutex::new(BTreeSet::new()),
        cluster,
        related_roles: BTreeSet::new(),
        counts: Mutex::new(ItemOutcomes::default()),
        results: Mutex::new(Results::default()),
        items: items_tx,
        retries: Mutex::new(Vec::new()),
        progress,
        log: log.clone(),
    };
    let run = Run {
        related_roles: run.related_cluster_roles(&plan).await,
        ..run
    };
    for (entry, reason) in &plan.skipped {
        run.record(
            entry,
            Applied {
                outcome: Outcome::Skipped,
                reason: Some(reason.clone()),
                warning: None,
                retry: false,
            },
        )
        .await;
    }
    let total = plan.total;
    for (tier, frames) in plan.tiers.into_iter().enumerate() {
        let manage_namespaces = tier == 1 && tenant.is_none() && !spec.dry_run;
        if manage_namespaces {
            run.namespaces_ready(settings).await;
        }
        let crds: Vec<String> = if tier == 0 {
            frames.values().flatten().map(|e| e.name.clone()).collect()
        } else {
            Vec::new()
        };
        run.restore_tier(frames, settings).await;
        if manage_namespaces {
            run.ensure_namespaces().await;
        }
        if !crds.is_empty() && !spec.dry_run {
            run.crds_ready(&crds, settings).await;
        }
    }
    run.retry_pass(settings).await;
    run.restore_volumes(request).await;
    let hooks = run.run_exec_hooks().await;

    let Run {
        counts,
        results,
        items,
        ..
    } = run;
    drop(items);
    items_task
        .await
        .map_err(|e| RestoreError::Internal(e.to_string()))??;
    let outcome = RestoreOutcome {
        hooks,
        total,
        outcomes: counts.into_inner().unwrap_or_default(),
        results: results.into_inner().unwrap_or_default(),
    };
    let results_json = serde_json::to_vec_pretty(&outcome.results)
        .map_err(|e| RestoreError::Internal(e.to_string()))?;
    output
        .put(
            &Layout::restore_results(&request.name),
            Bytes::from(results_json),
        )
        .await?;
    let o = &outcome.outcomes;
    log.info(format!(
        "done: {} created, {} updated, {} existing, {} skipped, {} failed",
        o.created, o.updated, o.existing, o.skipped, o.failed
    ));
    Ok(outcome)
}

fn type_of_entry(e: &IndexEntry) -> ResourceType {
    ResourceType {
        group: e.group.clone(),
        version: e.version.clone(),
        kind: e.kind.clone(),
        plural: e.resource.clone(),
        singular: e.kind.to_ascii_lowercase(),
        short_names: Vec::new(),
        namespaced: e.namespace.is_some(),
        verbs: Vec::new(),
    }
}

impl Run<'_> {
    async fn restore_tier(
        &self,
        frames: BTreeMap<FrameRef, Vec<IndexEntry>>,
        settings: RestoreSettings,
    ) {
        let items = futures::stream::iter(frames)
            .map(|(frame, entries)| async move {
                (entries, read_frame(self.store, &self.backup, frame).await)
            })
            .buffered(settings.frame_concurrency.max(1))
            .flat_map(|(entries, decoded)| futures::stream::iter(pair(entries, decoded)));
        items
            .for_each_concurrent(
                settings.apply_concurrency.max(1),
                |(entry, json)| async move {
                    let applied = match json {
                        Ok(json) => self.restore_item(&entry, json).await,
                        Err(reason) => Some(Applied {
                            outcome: Outcome::Failed,
                            reason: Some(reason),
                            warning: None,
                            retry: false,
                        }),
                    };
                    match applied {
                        Some(applied) => self.record(&entry, applied).await,
                        None => self.progress.add_done(1),
                    }
                },
            )
            .await;
    }

    /// Restores one item; None when its labels leave it out of the restore.
    async fn restore_item(&self, entry: &IndexEntry, json: Bytes) -> Option<Applied> {
        let fail = |reason: String| {
            Some(Applied {
                outcome: Outcome::Failed,
                reason: Some(reason),
                warning: None,
                retry: false,
            })
        };
        let skip = |reason: String| {
            Some(Applied {
                outcome: Outcome::Skipped,
                reason: Some(reason),
                warning: None,
                retry: false,
            })
        };
        if hex::encode(Sha256::digest(&json)) != entry.sha256 {
            return fail(format!("checksum mismatch for {}", entry.path));
        }
        let mut object: Value = match serde_json::from_slice(&json) {
            Ok(v) => v,
            Err(e) => return fail(format!("{} is not JSON: {e}", entry.path)),
        };
        if !self.labels.is_empty() {
            let labels: BTreeMap<String, String> = object
                .pointer("/metadata/labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            if !self.labels.matches(&labels) {
                return None;
            }
        }
        let owners: Vec<Owner> = owners_of(&object);
        let gr = entry.group_resource();
        let snapshots: Vec<VolumeSnapshot> = if gr == "pods" {
            let ns = entry.namespace.as_deref().unwrap_or_default();
            self.volume_snapshots
                .of_pod(ns, &entry.name)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        // A pod with volume data is restored even when a controller would recreate it: the
        // data goes into this pod (the controller adopts it).
        if let Some(ns) = &entry.namespace
            && snapshots.is_empty()
            && let Some(reason) = recreated_by_controller(ns, &owners, &self.workloads)
        {
            return skip(reason);
        }
        if let Some(reason) = self.unrelated(entry, &object) {
            return skip(reason);
        }
        if gr == "configmaps" && entry.name == "kube-root-ca.crt" {
            return skip("published by the cluster itself".into());
        }
        let status = if (self.status_of)(&gr) {
            object.get("status").cloned()
        } else {
            None
        };
        let hooks = if gr == "pods" {
            self.pod_hooks(entry, &object)
        } else {
            PodRestoreHooks::default()
        };
        self.transform.apply(&gr, &mut object, false);
        inject_init_containers(&mut object, &hooks.init_containers);
        if let Some(helper) = &self.restore_helper
            && !snapshots.is_empty()
        {
            let volumes: Vec<&str> = snapshots.iter().map(|s| s.volume.as_str()).collect();
            helper.inject(&mut object, &volumes);
        }
        let applied = self.write(entry, object, status).await;
        if !snapshots.is_empty() {
            self.note_volumes(entry, &applied, snapshots);
        }
        if applied.outcome == Outcome::Created && !self.applier.dry_run && !hooks.exec.is_empty() {
            let namespace = self
                .transform
                .target_namespace(entry.namespace.as_deref().unwrap_or_default())
                .to_string();
            if let Ok(mut pending) = self.pending_hooks.lock() {
                pending.push((namespace, entry.name.clone(), hooks.exec));
            }
        }
        Some(applied)
    }

    /// A restored pod with snapshots waits for its data; one that already existed (and
    /// was kept) does not get it, and the restore says so.
    fn note_volumes(&self, entry: &IndexEntry, applied: &Applied, snapshots: Vec<VolumeSnapshot>) {
        let namespace = self
            .transform
            .target_namespace(entry.namespace.as_deref().unwrap_or_default())
            .to_string();
        let volumes: Vec<&str> = snapshots.iter().map(|s| s.volume.as_str()).collect();
        match applied.outcome {
            Outcome::Created if !self.restore_volumes => self.log.info(format!(
                "pod {namespace}/{}: restorePVs is false, its volumes [{}] are left empty",
                entry.name,
                volumes.join(", ")
            )),
            Outcome::Created if self.applier.dry_run => self.log.info(format!(
                "dry run: pod {namespace}/{} would get the data of volumes [{}]",
                entry.name,
                volumes.join(", ")
            )),
            Outcome::Created => {
                if let Ok(mut pending) = self.pending_volumes.lock() {
                    pending.push(PodToFill {
                        namespace,
                        pod: entry.name.clone(),
                        snapshots,
                    });
                }
            }
            _ => self.warn(
                &namespace,
                format!(
                    "pod {namespace}/{} was not created by this restore: the data of its volumes [{}] is not restored into it",
                    entry.name,
                    volumes.join(", ")
                ),
            ),
        }
    }

    /// Fills the recreated pods' volumes through the node agents.
    async fn restore_volumes(&self, request: &RestoreRequest) {
        let pods = self
            .pending_volumes
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        if pods.is_empty() {
            return;
        }
        let job = match &request.volumes {
            Ok(job) => job,
            Err(why) => {
                if let Ok(mut results) = self.results.lock() {
                    for pod in pods {
                        let message = format!(
                            "pod {}/{}: the data of its volumes is not restored: {why}",
                            pod.namespace, pod.pod
                        );
                        self.log.error(message.clone());
                        results.errors.add(Some(&pod.namespace), message);
                    }
                }
                return;
            }
        };
        let run = RestoreRun {
            name: &request.name,
            uid: &request.uid,
        };
        let outcome = pod_volumes::restore::restore(&self.client, job, run, pods, &self.log).await;
        if let Ok(mut results) = self.results.lock() {
            for (ns, e) in outcome.errors {
                self.log.error(e.clone());
                results.errors.add(Some(&ns), e);
            }
        }
    }

    fn warn(&self, namespace: &str, message: String) {
        self.log.warn(message.clone());
        if let Ok(mut results) = self.results.lock() {
            results.warnings.add(Some(namespace), message);
        }
    }

    /// The restore hooks of a backed-up pod; a bad annotation is a warning, and no hook.
    fn pod_hooks(&self, entry: &IndexEntry, object: &Value) -> PodRestoreHooks {
        let read = |field: &str| -> BTreeMap<String, String> {
            object
                .pointer(&format!("/metadata/{field}"))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        };
        let namespace = entry.namespace.as_deref().unwrap_or_default();
        match hooks_of(
            namespace,
            &read("labels"),
            &read("annotations"),
            self.hooks.as_ref(),
        ) {
            Ok(hooks) => hooks,
            Err(problem) => {
                if let Ok(mut results) = self.results.lock() {
                    results.warnings.add(
                        Some(self.transform.target_namespace(namespace)),
                        format!(
                            "pod {}: {problem}; its restore hooks are not run",
                            entry.name
                        ),
                    );
                }
                PodRestoreHooks::default()
            }
        }
    }

    /// Runs the exec hooks of restored pods, each once its container is up.
    async fn run_exec_hooks(&self) -> HookStatus {
        let pending = self
            .pending_hooks
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        let runs: Vec<HookResults> = futures::stream::iter(pending)
            .map(|(namespace, pod, hooks)| async move {
                run_exec(&self.client, &namespace, &pod, &hooks, &self.log).await
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut status = HookStatus::default();
        for run in runs {
            status.hooks_attempted += run.status.hooks_attempted;
            status.hooks_failed += run.status.hooks_failed;
            if let Ok(mut results) = self.results.lock() {
                for (ns, e) in run.errors {
                    self.log.error(e.clone());
                    results.errors.add(Some(&ns), e);
                }
                for (ns, w) in run.warnings {
                    self.log.warn(w.clone());
                    results.warnings.add(Some(&ns), w);
                }
            }
        }
        status
    }

    async fn write(&self, entry: &IndexEntry, object: Value, status: Option<Value>) -> Applied {
        let Some(target) = self.target(entry, &object) else {
            let applied = Applied {
                outcome: Outcome::Failed,
                reason: Some(format!(
                    "the cluster does not serve {} {}",
                    entry.group, entry.kind
                )),
                warning: None,
                retry: true,
            };
            return self.maybe_retry(entry, object, status, applied);
        };
        let applied = self.applier.apply(&target, &object, status.as_ref()).await;
        self.maybe_retry(entry, object, status, applied)
    }

    fn maybe_retry(
        &self,
        entry: &IndexEntry,
        object: Value,
        status: Option<Value>,
        applied: Applied,
    ) -> Applied {
        if applied.retry
            && let Ok(mut retries) = self.retries.lock()
        {
            retries.push(Retry {
                entry: entry.clone(),
                object,
                status,
            });
        }
        applied
    }

    fn target(&self, entry: &IndexEntry, object: &Value) -> Option<Target> {
        let catalogue = self.catalogue.read().ok()?.clone();
        let rt = catalogue.by_kind(&entry.group, &entry.kind)?;
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let base = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        Some(Target {
            base,
            plural: rt.plural.clone(),
            namespace: entry
                .namespace
                .as_deref()
                .map(|ns| self.transform.target_namespace(ns).to_string()),
            name: object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or(&entry.name)
                .to_string(),
        })
    }

    /// Under `includeClusterResources` unset with some namespaces chosen, a cluster-scoped
    /// item comes along only when what is restored needs it.
    fn unrelated(&self, entry: &IndexEntry, object: &Value) -> Option<String> {
        if entry.namespace.is_some() || self.cluster != ClusterResources::RelatedOnly {
            return None;
        }
        let related = match entry.group_resource().as_str() {
            "persistentvolumes" => object
                .pointer("/spec/claimRef/namespace")
                .and_then(Value::as_str)
                .is_some_and(|ns| self.namespaces.contains(ns)),
            "clusterrolebindings.rbac.authorization.k8s.io" => {
                binds_restored_account(object, &self.namespaces)
            }
            "clusterroles.rbac.authorization.k8s.io" => self.related_roles.contains(&entry.name),
            _ => true,
        };
        (!related).then(|| "cluster-scoped and not needed by the restored namespaces".to_string())
    }

    /// The ClusterRoles bound to restored service accounts (read ahead from the bindings).
    async fn related_cluster_roles(&self, plan: &Plan) -> BTreeSet<String> {
        let mut roles = BTreeSet::new();
        if self.cluster != ClusterResources::RelatedOnly {
            return roles;
        }
        let frames: BTreeSet<FrameRef> = plan
            .tiers
            .iter()
            .flat_map(|t| t.iter())
            .filter(|(_, entries)| {
                entries
                    .iter()
                    .any(|e| e.group_resource() == "clusterrolebindings.rbac.authorization.k8s.io")
            })
            .map(|(frame, _)| *frame)
            .collect();
        for frame in frames {
            let Ok(items) = read_frame(self.store, &self.backup, frame).await else {
                continue;
            };
            for item in items {
                let Ok(binding) = serde_json::from_slice::<Value>(&item.json) else {
                    continue;
                };
                if binds_restored_account(&binding, &self.namespaces)
                    && binding.pointer("/roleRef/kind") == Some(&Value::from("ClusterRole"))
                    && let Some(name) = binding.pointer("/roleRef/name").and_then(Value::as_str)
                {
                    roles.insert(name.to_string());
                }
            }
        }
        roles
    }

    async fn namespaces_ready(&self, settings: RestoreSettings) {
        futures::stream::iter(&self.namespaces)
            .for_each_concurrent(NAMESPACE_CHECKS, |ns| async move {
                let target = self.transform.target_namespace(ns);
                if let Err(e) = readiness::namespace_not_terminating(
                    &self.client,
                    target,
                    settings.wait_timeout,
                )
                .await
                {
                    self.log.warn(e);
                }
            })
            .await;
    }

    async fn crds_ready(&self, crds: &[String], settings: RestoreSettings) {
        match readiness::crds_served(&self.client, crds, settings.wait_timeout).await {
            Ok(catalogue) => {
                if let Ok(mut current) = self.catalogue.write() {
                    *current = Arc::new(catalogue);
                }
                self.log
                    .info(format!("{} CRDs established and served", crds.len()));
            }
            Err(e) => self.log.warn(format!(
                "{e}; their custom resources will be retried at the end"
            )),
        }
    }

    /// Namespaces with items whose Namespace object is not in the backup (or was filtered
    /// out) are created bare, labelled with the backup and restore. One whose Namespace item
    /// failed is not: the archive (or the apiserver) refused it, and its items fail with it.
    async fn ensure_namespaces(&self) {
        let failed = self
            .failed_namespaces
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        let labels = serde_json::json!({
            arca_api::labels::BACKUP_NAME: label_value(&self.transform.backup_name),
            arca_api::labels::RESTORE_NAME: label_value(&self.transform.restore_name),
        });
        let labels = &labels;
        let failed = &failed;
        futures::stream::iter(self.namespaces.iter().filter(|ns| !failed.contains(*ns)))
            .for_each_concurrent(NAMESPACE_CHECKS, |ns| async move {
                let target = self.transform.target_namespace(ns);
                match readiness::ensure_namespace(&self.client, target, labels).await {
                    Ok(true) => self
                        .log
                        .info(format!("created namespace {target} (not in the backup)")),
                    Ok(false) => {}
                    Err(e) => self.log.error(e),
                }
            })
            .await;
    }

    async fn retry_pass(&self, settings: RestoreSettings) {
        for round in 1..=3 {
            let pending = self
                .retries
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            if pending.is_empty() {
                return;
            }
            self.log.info(format!(
                "retry {round}: {} items waited for a dependency",
                pending.len()
            ));
            if let Ok(catalogue) = Catalogue::discover(&self.client).await
                && let Ok(mut current) = self.catalogue.write()
            {
                *current = Arc::new(catalogue);
            }
            tokio::time::sleep(std::time::Duration::from_secs(round)).await;
            let last = round == 3;
            futures::stream::iter(pending)
                .for_each_concurrent(settings.apply_concurrency.max(1), |retry| async move {
                    let mut applied = self.write(&retry.entry, retry.object, retry.status).await;
                    if !applied.retry || last {
                        applied.retry = false;
                        self.record(&retry.entry, applied).await;
                    }
                })
                .await;
        }
    }

    async fn record(&self, entry: &IndexEntry, applied: Applied) {
        if applied.retry {
            return; // decided in the retry pass
        }
        let target_ns = entry
            .namespace
            .as_deref()
            .map(|ns| self.transform.target_namespace(ns).to_string());
        if let Ok(mut counts) = self.counts.lock() {
            match applied.outcome {
                Outcome::Created => counts.created += 1,
                Outcome::Updated => counts.updated += 1,
                Outcome::Existing => counts.existing += 1,
                Outcome::Skipped => counts.skipped += 1,
                Outcome::Failed => counts.failed += 1,
            }
        }
        if let Ok(mut results) = self.results.lock() {
            let group = Some(target_ns.as_deref().unwrap_or_default()).filter(|ns| !ns.is_empty());
            if let Some(warning) = &applied.warning {
                results.warnings.add(group, warning.clone());
            }
            if applied.outcome == Outcome::Failed {
                if entry.namespace.is_none()
                    && entry.group_resource() == "namespaces"
                    && let Ok(mut failed) = self.failed_namespaces.lock()
                {
                    failed.insert(entry.name.clone());
                }
                let reason = applied.reason.clone().unwrap_or_default();
                self.log.error(reason.clone());
                results.errors.add(group, reason);
            }
        }
        self.progress.add_done(1);
        let _ = self
            .items
            .send(ItemRecord {
                resource: entry.group_resource(),
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
                target_namespace: target_ns.filter(|t| Some(t) != entry.namespace.as_ref()),
                outcome: applied.outcome,
                reason: applied.reason,
            })
            .await;
    }
}

/// Pairs the entries of a frame with their bytes in the decoded frame.
fn pair(
    entries: Vec<IndexEntry>,
    decoded: Result<Vec<ArchivedItem>, arca_store::StoreError>,
) -> Vec<(IndexEntry, Result<Bytes, String>)> {
    match decoded {
        Err(e) => entries
            .into_iter()
            .map(|entry| (entry, Err(e.to_string())))
            .collect(),
        Ok(items) => {
            let mut by_path: BTreeMap<String, Bytes> =
                items.into_iter().map(|i| (i.path, i.json)).collect();
            entries
                .into_iter()
                .map(|entry| {
                    let json = by_path.remove(&entry.path).ok_or_else(|| {
                        format!("{} is in the index but not in its frame", entry.path)
                    });
                    (entry, json)
                })
                .collect()
        }
    }
}

fn owners_of(object: &Value) -> Vec<Owner> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .map(|r| Owner {
                    api_version: r["apiVersion"].as_str().unwrap_or_default().to_string(),
                    kind: r["kind"].as_str().unwrap_or_default().to_string(),
                    name: r["name"].as_str().unwrap_or_default().to_string(),
                    controller: r["controller"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn binds_restored_account(binding: &Value, namespaces: &BTreeSet<String>) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|subjects| {
            subjects.iter().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["namespace"]
                        .as_str()
                        .is_some_and(|ns| namespaces.contains(ns))
            })
        })
}
