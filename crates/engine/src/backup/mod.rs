//! The backup engine: discovery -> choose namespaces -> list every chosen type
//! concurrently, paginated -> related items -> archive and index streamed to storage ->
//! results. Writing `backup.json` (what makes the backup exist) is left to the caller, once
//! it has decided the backup's final status: see `arca_store::BackupStore::complete`.

mod collect;
mod data_mover;
pub mod list;
pub mod ordered;
pub mod plan;
pub mod policies;
mod related;
mod snapshots;
mod volume_policy;
pub mod volumes;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use arca_api::BackupSpec;
use arca_store::{
    Layout, ObjectStore, StoreError,
    archive::{ArchiveStats, ArchiveWriter, EncodedFrame, Results},
};
use bytes::Bytes;
use futures::StreamExt;
use kube::Client;
use serde::Deserialize;
use tokio::sync::mpsc;

pub use collect::Related;
use collect::{Collector, Stopped};
use list::{RawItem, fetch_page, list_url};
use ordered::{OrderedName, OrderedResources};
use plan::{ListScope, plan_lists};
use policies::ResourcePolicies;

use crate::{
    catalogue::Catalogue,
    filters::{ClusterResources, FilterError, LabelFilter, NamespaceFilter, ResourceFilter},
    hooks::backup::{self as hooks, Phase},
    progress::Progress,
    runlog::RunLog,
};

/// What to back up.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    /// The Backup's name: its folder in storage.
    pub name: String,
    /// The Backup's namespace: its `resourcePolicy` ConfigMap is read there.
    pub namespace: String,
    pub spec: BackupSpec,
    /// `Some(namespace)`: a tenant's backup, confined to that namespace, with no
    /// cluster-scoped item.
    pub tenant: Option<String>,
    /// The ServiceAccount user the run's client impersonates, when not the operator's own.
    /// Its RBAC decides what the run reads: a type it may not list is then a warning naming
    /// it, not an error of the backup.
    pub acting_as: Option<String>,
    /// Modification time written in the tar headers (the backup's start), in seconds.
    pub mtime: u64,
    /// The Backup's uid: labels its pod volume work items.
    pub uid: String,
    /// Where pod volume data goes, or why it cannot go anywhere (volumes asked for then
    /// get an error each, and no data).
    pub volumes: Result<crate::pod_volumes::VolumeJob, String>,
    /// The Backup's annotations (`velero.io/csi-volumesnapshot-class_<driver>`).
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The operator's own client, for the cluster-scoped objects of CSI snapshots
    /// (VolumeSnapshotClasses, VolumeSnapshotContents, the claims' PersistentVolumes).
    pub operator_client: crate::csi::OperatorClient,
    /// Arca's image, for the data mover's pods (`snapshotMoveData`); None: data is not moved.
    pub helper_image: Option<String>,
    /// Set when the Backup is deleted while it runs: the run stops at its next safe point
    /// (pre hooks are always followed by their post hooks; running pod volume copies are
    /// asked to stop) and ends with [`BackupError::Canceled`], writing nothing more.
    pub cancel: tokio_util::sync::CancellationToken,
}

impl BackupRequest {
    /// The run its pod volume work items belong to.
    pub fn volume_run(&self) -> crate::pod_volumes::backup::BackupRun<'_> {
        crate::pod_volumes::backup::BackupRun {
            name: &self.name,
            uid: &self.uid,
            compression: self
                .spec
                .uploader_config
                .as_ref()
                .and_then(|c| c.compression),
        }
    }
}

/// Tuning.
#[derive(Clone, Copy, Debug)]
pub struct BackupSettings {
    /// Lists running at once.
    pub list_concurrency: usize,
    /// Items per page (lowered automatically for big items).
    pub page_size: u32,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            list_concurrency: 8,
            page_size: 500,
        }
    }
}

/// What a finished backup wrote.
#[derive(Clone, Debug)]
pub struct BackupOutcome {
    pub stats: ArchiveStats,
    pub results: Results,
    /// Resource types listed.
    pub resource_types: usize,
    /// Hooks run and failed, pre and post.
    pub hooks: arca_api::HookStatus,
    /// CSI VolumeSnapshots created, and of those ready and recorded.
    pub csi_snapshots_attempted: u32,
    pub csi_snapshots_completed: u32,
}

/// Why a backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the spec is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("reading the cluster's API discovery: {0}")]
    Discovery(#[source] kube::Error),
    #[error("listing namespaces: {0}")]
    Namespaces(String),
    #[error("writing to the storage location: {0}")]
    Store(#[from] StoreError),
    #[error("the backup task failed: {0}")]
    Internal(String),
    /// The run was canceled ([`BackupRequest::cancel`]); what it made outside its folder
    /// in storage is listed for the caller to remove.
    #[error("the backup was canceled (its Backup was deleted while it ran)")]
    Canceled(Box<Leftovers>),
}

/// What a canceled run made that outlives it: volume snapshots its copies wrote before they
/// were stopped, and CSI snapshots it took (kept in the storage system). Its folder in
/// storage holds the rest (an unfinished archive, its log), never `backup.json`.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub volume_snapshots: Vec<arca_store::archive::VolumeSnapshot>,
    pub csi_snapshots: Vec<arca_store::archive::CsiSnapshot>,
}

/// Checks of the spec that need no cluster: globs, selectors, a tenant's limits.
pub fn validate(spec: &BackupSpec, tenant: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut push = |r: Result<(), FilterError>| {
        if let Err(e) = r {
            problems.push(e.to_string());
        }
    };
    push(NamespaceFilter::new(&spec.included_namespaces, &spec.excluded_namespaces).map(|_| ()));
    push(LabelFilter::new(spec.label_selector.as_ref(), &spec.or_label_selectors).map(|_| ()));
    problems.extend(ordered::validate(&spec.ordered_resources));
    if spec.uses_old_resource_filters() && spec.uses_scoped_resource_filters() {
        problems.push("includedResources, excludedResources and includeClusterResources cannot be used together with the scoped filters (includedClusterScopedResources, excludedClusterScopedResources, includedNamespaceScopedResources, excludedNamespaceScopedResources): use one kind".into());
    }
    problems.extend(crate::scoped::ScopedLists::of(spec).problems());
    if let Some(reference) = &spec.resource_policy
        && !reference.kind.eq_ignore_ascii_case("configmap")
    {
        problems.push(format!(
            "resourcePolicy names a {}: the policies must be in a ConfigMap (kind: ConfigMap)",
            reference.kind
        ));
    }
    // An exclusion of every namespace leaves nothing namespaced: what was meant is either a
    // mistake or a cluster-only backup, which must then be asked for.
    let excludes_all = spec.excluded_namespaces.iter().any(|n| n.trim() == "*");
    let cluster_asked = spec.include_cluster_resources == Some(true)
        || !spec.included_cluster_scoped_resources.is_empty();
    if tenant.is_none() && excludes_all && !cluster_asked {
        problems.push(
            "excludedNamespaces [\"*\"] excludes every namespace, so nothing namespaced would be backed up: name the namespaces to leave out, or set includeClusterResources: true (or includedClusterScopedResources) for a backup of cluster-scoped resources only".into(),
        );
    }
    if let Some(ns) = tenant {
        let excluded = NamespaceFilter::new(&[], &spec.excluded_namespaces)
            .map(|f| !f.matches(ns))
            .unwrap_or(false);
        if excluded {
            problems.push(format!(
                "a Backup in namespace {ns} backs up {ns} only, and excludedNamespaces excludes it: nothing would be backed up; remove {ns} from excludedNamespaces"
            ));
        }
        let foreign: Vec<&String> = spec
            .included_namespaces
            .iter()
            .filter(|n| *n != ns)
            .collect();
        if !foreign.is_empty() {
            problems.push(format!(
                "a Backup in namespace {ns} backs up {ns} only; remove {foreign:?} from includedNamespaces (or create the Backup in the operator's namespace)"
            ));
        }
        if spec.include_cluster_resources == Some(true) {
            problems.push(format!(
                "a Backup in namespace {ns} cannot include cluster-scoped resources; remove includeClusterResources"
            ));
        }
        if !spec.included_cluster_scoped_resources.is_empty() {
            problems.push(format!(
                "a Backup in namespace {ns} cannot include cluster-scoped resources; remove includedClusterScopedResources"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod validation_tests {
    use super::*;

    fn spec(yaml: serde_json::Value) -> BackupSpec {
        serde_json::from_value(yaml).expect("a spec")
    }

    #[test]
    fn the_two_kinds_of_resource_filters_are_not_mixed_and_scoped_lists_are_checked() {
        let mixed = spec(serde_json::json!({
            "includedResources": ["pods"],
            "excludedClusterScopedResources": ["persistentvolumes"],
        }));
        let problems = validate(&mixed, None);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("cannot be used together")),
            "{problems:?}"
        );
        let star = spec(serde_json::json!({"excludedNamespaceScopedResources": ["*", "pods"]}));
        assert_eq!(
            validate(&star, None),
            vec!["excludedNamespaceScopedResources: `*` stands alone (it already means all)"]
        );
        let cluster_only = spec(serde_json::json!({
            "excludedNamespaces": ["*"],
            "includedClusterScopedResources": ["*"],
        }));
        assert!(validate(&cluster_only, None).is_empty());
        assert!(
            validate(&cluster_only, Some("team"))
                .iter()
                .any(|p| p.contains("remove includedClusterScopedResources")),
        );
    }

    #[test]
    fn excluding_every_namespace_needs_an_explicit_cluster_only_backup() {
        let all_out = spec(serde_json::json!({"excludedNamespaces": ["*"]}));
        let problems = validate(&all_out, None);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("excludes every namespace")),
            "{problems:?}"
        );
        let cluster_only =
            spec(serde_json::json!({"excludedNamespaces": ["*"], "includeClusterResources": true}));
        assert!(validate(&cluster_only, None).is_empty());
    }

    #[test]
    fn a_tenant_excluding_itself_is_told_so() {
        let own = spec(serde_json::json!({"excludedNamespaces": ["team-*"]}));
        let problems = validate(&own, Some("team-a"));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("excludedNamespaces excludes it")),
            "{problems:?}"
        );
        assert!(validate(&own, Some("shop")).is_empty());
    }
}

/// Runs a backup up to, not including, `backup.json`.
pub async fn run(
    client: Client,
    store: &dyn ObjectStore,
    request: &BackupRequest,
    settings: BackupSettings,
    progress: Arc<Progress>,
    log: RunLog,
) -> Result<BackupOutcome, BackupError> {
    let problems = validate(&request.spec, request.tenant.as_deref());
    if !problems.is_empty() {
        return Err(BackupError::Invalid(problems));
    }
    let spec = &request.spec;
    let catalogue = Catalogue::discover(&client)
        .await
        .map_err(BackupError::Discovery)?;
    let ordered = OrderedResources::resolve(&spec.ordered_resources, &catalogue)
        .map_err(BackupError::Invalid)?;
    let policies = match &spec.resource_policy {
        Some(reference) => {
            let text = crate::rules::read(
                &client,
                &request.namespace,
                &reference.name,
                "resourcePolicy",
            )
            .await
            .map_err(|e| BackupError::Invalid(vec![e]))?;
            Some(
                ResourcePolicies::from_config_map(&reference.name, &text)
                    .map_err(BackupError::Invalid)?,
            )
        }
        None => None,
    };
    let policy_filters = policies
        .as_ref()
        .and_then(|p| p.include_exclude.as_ref())
        .map(|p| p.lists());
    if let (Some(reference), Some(_)) = (&spec.resource_policy, &policy_filters)
        && spec.uses_old_resource_filters()
    {
        return Err(BackupError::Invalid(vec![format!(
            "resource policies ConfigMap {}: its includeExcludePolicy works with the scoped filters only, and this Backup sets includedResources, excludedResources or includeClusterResources: write them as includedNamespaceScopedResources, excludedNamespaceScopedResources, includedClusterScopedResources or excludedClusterScopedResources (Velero refuses this too)",
            reference.name
        )]));
    }
    let labels = LabelFilter::new(spec.label_selector.as_ref(), &spec.or_label_selectors)
        .map_err(|e| BackupError::Invalid(vec![e.to_string()]))?;
    let namespaces = match &request.tenant {
        Some(ns) => NamespaceFilter::only(ns),
        None => NamespaceFilter::new(&spec.included_namespaces, &spec.excluded_namespaces)
            .map_err(|e| BackupError::Invalid(vec![e.to_string()]))?,
    };
    // Velero's first filters, or its scoped ones (with the policy's): a spec with neither
    // and no policy filters reads the same either way.
    let scoped = spec.uses_scoped_resource_filters() || policy_filters.is_some();
    let (resources, cluster, filter_warnings) = if scoped && !spec.uses_old_resource_filters() {
        let decided = crate::scoped::decide(
            &catalogue,
            &crate::scoped::ScopedLists::of(spec),
            policy_filters.as_ref(),
            &namespaces,
        );
        (decided.resources, decided.cluster, decided.warnings)
    } else {
        let resources = ResourceFilter::new(
            &catalogue,
            &spec.included_resources,
            &spec.excluded_resources,
        );
        let cluster = ClusterResources::decide(spec.include_cluster_resources, &namespaces);
        (resources, cluster, Vec::new())
    };
    // A tenant's backup never takes a cluster-scoped item.
    let cluster = match &request.tenant {
        Some(_) => ClusterResources::None,
        None => cluster,
    };
    let (chosen_namespaces, existing) =
        choose_namespaces(&client, &catalogue, &namespaces, request.tenant.as_deref()).await?;
    let selected: BTreeSet<String> = match &request.tenant {
        Some(ns) => BTreeSet::from([ns.clone()]),
        None => chosen_namespaces
            .iter()
            .map(|i| i.head.metadata.name.clone())
            .collect(),
    };
    let custom_types = if cluster == ClusterResources::None {
        BTreeSet::new()
    } else {
        custom_resource_types(&client, &catalogue).await
    };

    // Pre hooks run before any item is read; a pod whose `Fail` hook failed is left out.
    // Problems planning them (a malformed annotation, pods that cannot be listed) are
    // recorded in the results once the collector exists: never only in the log.
    let mut plan_warnings = Vec::new();
    let mut plan_error = None;
    let hook_pods = if resources.matches("pods") {
        match hooks::plan(
            &client,
            &selected,
            &labels,
            &namespaces,
            spec.hooks.as_ref(),
        )
        .await
        {
            Ok((pods, warnings)) => {
                plan_warnings = warnings;
                pods
            }
            Err(e) => {
                plan_error = Some(format!("listing pods for hooks: {e}; no hook was run"));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    // `orderedResources` of pods: their hooks run first, one pod after another, in order.
    let mut hook_pods = hook_pods;
    ordered.sort("pods", &mut hook_pods, |p| OrderedName {
        namespace: Some(p.namespace.clone()),
        name: p.name.clone(),
    });
    let in_order = hook_pods
        .iter()
        .take_while(|p| {
            ordered.of("pods").contains(&OrderedName {
                namespace: Some(p.namespace.clone()),
                name: p.name.clone(),
            })
        })
        .count();
    let pre = hooks::run(
        &client,
        &hook_pods,
        (Phase::Pre, in_order),
        &BTreeSet::new(),
        &log,
    )
    .await;

    let mut writer = ArchiveWriter::create(store, &request.name).await?;
    let (frames_tx, mut frames_rx) = mpsc::channel::<EncodedFrame>(8);
    let writer_progress = progress.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            let items = frame.entries.len() as u64;
            if let Err(e) = writer.append(frame).await {
                writer.abort().await;
                return Err(e);
            }
            writer_progress.add_done(items);
        }
        Ok(writer)
    });

    let collector = Collector {
        client: client.clone(),
        namespaces,
        labels,
        custom_types,
        skipped_pods: pre.failed_pods.clone(),
        page_size: settings.page_size,
        volumes_default_all: spec.default_volumes_to_fs_backup.unwrap_or(false),
        mtime: request.mtime,
        frames: frames_tx,
        progress,
        log: log.clone(),
        related: Mutex::new(Related::default()),
        results: Mutex::new(Results::default()),
        volume_requests: Mutex::new(Vec::new()),
        acting_as: request.acting_as.clone(),
        ordered,
        volume_candidates: policies.is_some(),
    };
    for (ns, warning) in plan_warnings {
        collector.record_warning(Some(&ns), warning);
    }
    if let Some(error) = plan_error {
        collector.record_error(Some(""), error);
    }
    for warning in collector.ordered.outside(&selected) {
        collector.record_warning(Some(""), warning);
    }
    for warning in filter_warnings {
        collector.record_warning(Some(""), warning);
    }
    for name in &resources.unknown {
        collector.record_warning(
            Some(""),
            format!("resource {name:?} is not served by this cluster; ignored"),
        );
    }
    let tasks = plan_lists(&catalogue, &resources, cluster, &selected, existing);
    let resource_types: BTreeSet<String> =
        tasks.iter().map(|t| t.resource.group_resource()).collect();
    log.info(format!(
        "backing up {} namespaces, {} resource types ({} lists), cluster-scoped resources: {cluster:?}",
        selected.len(),
        resource_types.len(),
        tasks.len()
    ));

    let listed = collect_everything(
        &collector,
        &catalogue,
        &resources,
        cluster,
        chosen_namespaces,
        tasks,
        settings,
    )
    .await;
    // Volume data between the hooks, as Velero does: a pre hook quiesces, the data is
    // copied, the post hook resumes.
    let requests = std::mem::take(
        &mut *collector
            .volume_requests
            .lock()
            .map_err(|_| BackupError::Internal("volume requests lock poisoned".into()))?,
    );
    let requests = match &policies {
        Some(policies) => {
            volume_policy::choose(&client, policies, requests, &collector, &log).await
        }
        None => requests,
    };
    // Claims are snapshotted while the pod volumes are copied; a claim whose files a pod
    // volume copy takes is not snapshotted too.
    let copied = requests
        .iter()
        .filter_map(|r| r.claim.clone().map(|c| (r.namespace.clone(), c)))
        .collect();
    let claims_written = collector
        .related
        .lock()
        .map(|r| r.claims_written.clone())
        .map_err(|_| BackupError::Internal("related items lock poisoned".into()))?;
    let claim_mounts = collector
        .related
        .lock()
        .map(|r| r.claim_mounts.clone())
        .map_err(|_| BackupError::Internal("related items lock poisoned".into()))?;
    // A run canceled by now starts no volume work.
    let (copies, taken) = if listed.is_ok() && !request.cancel.is_cancelled() {
        let copies = async {
            if requests.is_empty() {
                return None;
            }
            back_up_volumes(request, requests, &collector, &log).await
        };
        let snapshots = snapshots::snapshot_claims(
            &client,
            request,
            snapshots::Claims {
                written: claims_written,
                copied,
            },
            policies.as_ref(),
            &collector,
            &log,
        );
        futures::join!(copies, snapshots)
    } else {
        (None, snapshots::Taken::default())
    };
    // Post hooks once everything of the pods is written (pods left out by a failed pre hook
    // get none).
    let post = hooks::run(
        &client,
        &hook_pods,
        (Phase::Post, in_order),
        &pre.failed_pods,
        &log,
    )
    .await;
    for outcome in [&pre, &post] {
        for (ns, e) in &outcome.errors {
            collector.record_error(Some(ns), e.clone());
        }
        for (ns, w) in &outcome.warnings {
            collector.record_warning(Some(ns), w.clone());
        }
    }
    // The snapshots' data into the bucket, once the post hooks let the workloads go on.
    let completed = taken.snapshots.len() as u32;
    let moved = if request.spec.snapshot_move_data == Some(true) {
        data_mover::move_data(request, taken.snapshots, &claim_mounts, &collector, &log).await
    } else {
        data_mover::Moved {
            copies: Vec::new(),
            kept: taken.snapshots,
        }
    };
    if request.cancel.is_cancelled() {
        drop(collector.frames);
        if let Ok(Ok(writer)) = writer_task.await {
            writer.abort().await;
        }
        let mut volume_snapshots = copies.unwrap_or_default();
        volume_snapshots.extend(moved.copies);
        log.warn("the backup was canceled: nothing more is written");
        return Err(BackupError::Canceled(Box::new(Leftovers {
            volume_snapshots,
            csi_snapshots: moved.kept,
        })));
    }
    let volumes_file = match copies {
        None if moved.copies.is_empty() => None,
        copies => {
            let mut all = copies.unwrap_or_default();
            all.extend(moved.copies);
            Some(write_volumes_file(store, request, all).await?)
        }
    };
    let csi = snapshots::write_file(store, request, taken.attempted, completed, moved.kept).await?;
    let hook_status = arca_api::HookStatus {
        hooks_attempted: pre.status.hooks_attempted + post.status.hooks_attempted,
        hooks_failed: pre.status.hooks_failed + post.status.hooks_failed,
    };
    let results = collector.results.into_inner().unwrap_or_default();
    drop(collector.frames);
    let writer = writer_task
        .await
        .map_err(|e| BackupError::Internal(e.to_string()))??;
    if listed.is_err() {
        writer.abort().await;
        return Err(BackupError::Internal(
            "the archive stopped accepting items".into(),
        ));
    }
    let mut stats = writer.finish().await?;
    if let Some((bytes, sha256)) = volumes_file {
        stats.volumes_bytes = Some(bytes);
        stats.volumes_sha256 = Some(sha256);
    }
    if let Some((bytes, sha256)) = csi.file {
        stats.csi_snapshots_bytes = Some(bytes);
        stats.csi_snapshots_sha256 = Some(sha256);
    }
    let results_json =
        serde_json::to_vec_pretty(&results).map_err(|e| BackupError::Internal(e.to_string()))?;
    store
        .put(
            &Layout::backup_results(&request.name),
            Bytes::from(results_json),
        )
        .await?;
    log.info(format!(
        "wrote {} items ({} bytes compressed), {} errors, {} warnings",
        stats.items,
        stats.archive_bytes,
        results.errors.count(),
        results.warnings.count()
    ));
    Ok(BackupOutcome {
        stats,
        results,
        resource_types: resource_types.len(),
        hooks: hook_status,
        csi_snapshots_attempted: csi.attempted,
        csi_snapshots_completed: csi.completed,
    })
}

/// Copies the requested pod volumes through the node agents; returns the snapshots taken,
/// None when volume data cannot go anywhere (each volume is then an error, and no
/// `volumes.json` is written for them).
async fn back_up_volumes(
    request: &BackupRequest,
    requests: Vec<volumes::VolumeRequest>,
    collector: &Collector,
    log: &RunLog,
) -> Option<Vec<arca_store::archive::VolumeSnapshot>> {
    let job = match &request.volumes {
        Ok(job) => job,
        Err(why) => {
            for r in requests {
                collector.record_error(
                    Some(&r.namespace),
                    format!(
                        "pod {}/{}: the data of volume {} was asked for but is not backed up: {why}",
                        r.namespace, r.pod, r.volume
                    ),
                );
            }
            return None;
        }
    };
    let outcome =
        crate::pod_volumes::backup::back_up(job, request.volume_run(), requests, log).await;
    for (ns, message) in outcome.errors {
        collector.record_error(Some(&ns), message);
    }
    for (ns, message) in outcome.warnings {
        collector.record_warning(Some(&ns), message);
    }
    Some(outcome.snapshots)
}

/// Writes `volumes.json`; returns its size and sha256 (for the seal of `backup.json`).
async fn write_volumes_file(
    store: &dyn ObjectStore,
    request: &BackupRequest,
    mut snapshots: Vec<arca_store::archive::VolumeSnapshot>,
) -> Result<(u64, String), BackupError> {
    snapshots
        .sort_by(|a, b| (&a.namespace, &a.pod, &a.volume).cmp(&(&b.namespace, &b.pod, &b.volume)));
    let snapshots = arca_store::archive::VolumeSnapshots { snapshots };
    let json =
        serde_json::to_vec_pretty(&snapshots).map_err(|e| BackupError::Internal(e.to_string()))?;
    let digest = (
        json.len() as u64,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json)),
    );
    store
        .put(&Layout::backup_volumes(&request.name), Bytes::from(json))
        .await?;
    Ok(digest)
}

async fn collect_everything(
    collector: &Collector,
    catalogue: &Catalogue,
    resources: &ResourceFilter,
    cluster: ClusterResources,
    namespaces: Vec<RawItem>,
    tasks: Vec<plan::ListTask>,
    settings: BackupSettings,
) -> Result<(), Stopped> {
    if let Some(rt) = catalogue.get("namespaces") {
        collector.write(rt, namespaces).await?;
    }
    let mut runs = futures::stream::iter(tasks)
        .map(|task| collector.run(task))
        .buffer_unordered(settings.list_concurrency.max(1));
    while let Some(done) = runs.next().await {
        done?;
    }
    related::add_related(collector, catalogue, resources, cluster).await
}

/// The Namespace objects chosen (to write) and how many namespaces exist.
async fn choose_namespaces(
    client: &Client,
    catalogue: &Catalogue,
    filter: &NamespaceFilter,
    tenant: Option<&str>,
) -> Result<(Vec<RawItem>, usize), BackupError> {
    if tenant.is_some() {
        return Ok((Vec::new(), 1));
    }
    let rt = catalogue.get("namespaces").ok_or_else(|| {
        BackupError::Namespaces("the cluster serves no namespaces resource".into())
    })?;
    let url = list_url(rt, &ListScope::Cluster);
    let (mut chosen, mut existing, mut token) = (Vec::new(), 0, None::<String>);
    loop {
        let page = fetch_page(client, &url, 500, token.as_deref(), None, rt)
            .await
            .map_err(|e| BackupError::Namespaces(e.to_string()))?;
        existing += page.items.len();
        token = page.continue_token.clone();
        chosen.extend(page.items.into_iter().filter(|i| {
            filter.matches(&i.head.metadata.name)
                && i.head.metadata.deletion_timestamp.is_none()
                && !crate::filters::excluded_by_label(&i.head.metadata.labels)
        }));
        if token.is_none() {
            return Ok((chosen, existing));
        }
    }
}

#[derive(Deserialize)]
struct CrdNames {
    spec: CrdSpec,
}

#[derive(Deserialize)]
struct CrdSpec {
    group: String,
    names: CrdPlural,
}

#[derive(Deserialize)]
struct CrdPlural {
    plural: String,
}

/// `plural.group` of every type a CRD defines (their CRDs come along with their items).
async fn custom_resource_types(client: &Client, catalogue: &Catalogue) -> BTreeSet<String> {
    let Some(rt) = catalogue.get("customresourcedefinitions.apiextensions.k8s.io") else {
        return BTreeSet::new();
    };
    let url = list_url(rt, &ListScope::Cluster);
    let mut out = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let Ok(page) = fetch_page(client, &url, 500, token.as_deref(), None, rt).await else {
            return out;
        };
        for item in &page.items {
            if let Ok(crd) = serde_json::from_slice::<CrdNames>(&item.json) {
                out.insert(format!("{}.{}", crd.spec.names.plural, crd.spec.group));
            }
        }
        token = page.continue_token;
        if token.is_none() {
            return out;
        }
    }
}
