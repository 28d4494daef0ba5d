//! Running a restore: see the module documentation of `restore`. This file holds the run
//! (verify, survey, plan, tier by tier) and its state; `passes` streams the index for each
//! of them, `item` restores one item, `ledger` records outcomes, `tiers` does what happens
//! between tiers, `follow_ups` the volumes and hooks.

mod follow_ups;
mod item;
mod ledger;
mod passes;
mod tiers;

use item::type_of_entry;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, RwLock},
};

use arca_api::{ExistingResourcePolicy, ItemOutcomes};
use arca_store::{
    Layout, ObjectStore,
    archive::{
        ArchivedItem, BackupMetadata, FrameRef, IndexEntry, JsonlWriter, KNOWN_FORMATS, Results,
        VerifiedIndex, read_frame, verify_index, verify_object,
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
    modifiers::ResourceModifiers,
    order::Tier,
    plan::{Plan, PlanFilters, Scope, Survey},
    readiness,
    skip::{self, Restored, Workloads, binds_restored_account},
    transform::{Transform, label_value},
    validate,
};
use arca_api::HookStatus;
use arca_store::archive::{VolumeSnapshot, VolumeSnapshots};

use crate::pod_volumes::{
    self,
    populate::ClaimToFill,
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
    /// The index as verified: every pass reads it checked against this.
    index: VerifiedIndex,
    catalogue: RwLock<Arc<Catalogue>>,
    transform: Transform,
    /// The Restore's resource modifier rules.
    modifiers: Option<ResourceModifiers>,
    applier: Applier,
    labels: LabelFilter,
    status_of: Box<dyn Fn(&str) -> bool + Send + Sync>,
    hooks: Option<arca_api::RestoreHooks>,
    /// Restored pods with exec hooks: (namespace, pod, hooks).
    pending_hooks: Mutex<Vec<(String, String, Vec<ExecAfterRestore>)>>,
    /// The pod volume snapshots of the backup (`volumes.json`).
    volume_snapshots: VolumeSnapshots,
    /// The CSI snapshots of the backup's claims (`csi-snapshots.json`).
    csi_snapshots: arca_store::archive::CsiSnapshots,
    /// PersistentVolumes not restored because their claims get new ones, whose data the
    /// node agent writes (see [`super::reprovision`]); their claims lose `volumeName`.
    reprovisioned_volumes: Mutex<BTreeSet<String>>,
    /// The operator's own client (the contents of CSI snapshots).
    operator: Client,
    /// The Restore's uid.
    uid: String,
    /// Recreated pods whose volumes wait for their data.
    pending_volumes: Mutex<Vec<PodToFill>>,
    /// Recreated claims the backup holds alone (no pod), filled through pods of their own.
    pending_claims: Mutex<Vec<ClaimToFill>>,
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
    let modifiers = match &spec.resource_modifier {
        Some(reference) => {
            let text = crate::rules::read(
                &client,
                &request.namespace,
                &reference.name,
                "resourceModifier",
            )
            .await
            .map_err(|e| RestoreError::Invalid(vec![e]))?;
            Some(
                ResourceModifiers::from_config_map(&reference.name, &text)
                    .map_err(RestoreError::Invalid)?,
            )
        }
        None => None,
    };
    if !KNOWN_FORMATS.contains(&metadata.format_version.as_str()) {
        return Err(RestoreError::Format {
            backup: request.backup_name.clone(),
            found: metadata.format_version.clone(),
            known: KNOWN_FORMATS.join(", "),
        });
    }
    let corrupt = |source| RestoreError::Corrupt {
        backup: request.backup_name.clone(),
        source,
    };
    let stats = &metadata.stats;
    let index = verify_index(
        store,
        &request.backup_name,
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

    let volume_snapshots =
        arca_store::archive::read_volume_snapshots(store, &request.backup_name, metadata)
            .await
            .map_err(corrupt)?;
    if let Ok(job) = &request.volumes {
        foreign_repository(
            |ns| job.repository(ns).to_string(),
            &request.backup_name,
            &volume_snapshots,
        )
        .map_err(corrupt)?;
    }
    let csi_snapshots =
        arca_store::archive::read_csi_snapshots(store, &request.backup_name, metadata)
            .await
            .map_err(corrupt)?;
    if let Some(ns) = tenant {
        foreign_snapshot(ns, &request.backup_name, &csi_snapshots).map_err(corrupt)?;
    }
    let namespaces = NamespaceFilter::new(&spec.included_namespaces, &spec.excluded_namespaces)
        .map_err(|e| RestoreError::Invalid(vec![e.to_string()]))?;
    let transform = Transform {
        backup_name: request.backup_name.clone(),
        restore_name: request.name.clone(),
        namespace_mapping: spec.namespace_mapping.clone(),
        preserve_node_ports: spec.preserve_node_ports.unwrap_or(false),
        restored_volumes: BTreeSet::new(),
    };
    let scope = Scope {
        namespaces: &namespaces,
        tenant,
        target: &|ns| transform.target_namespace(ns).to_string(),
    };
    let (found, backup_types) = passes::survey(store, &index, &scope, &request.backup_name).await?;
    let catalogue = Catalogue::discover(&client)
        .await
        .map_err(RestoreError::Discovery)?;
    let known = catalogue.with_types(backup_types);
    let resources = ResourceFilter::new(&known, &spec.included_resources, &spec.excluded_resources);
    let status_spec = spec.restore_status.clone().unwrap_or_default();
    let status_filter = ResourceFilter::new(
        &known,
        &status_spec.included_resources,
        &status_spec.excluded_resources,
    );
    let status_wanted = !status_spec.included_resources.is_empty();
    let cluster = match tenant {
        Some(_) => ClusterResources::None,
        None => ClusterResources::decide(spec.include_cluster_resources, &namespaces),
    };
    let filters = PlanFilters {
        scope,
        resource_matches: &|gr| resources.matches(gr),
        cluster,
    };
    let survey = found.finish(filters.resource_matches);
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

    let mut run = Run {
        client: client.clone(),
        store,
        backup: request.backup_name.clone(),
        index,
        catalogue: RwLock::new(Arc::new(catalogue)),
        transform: transform.clone(),
        modifiers,
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
        csi_snapshots,
        reprovisioned_volumes: Mutex::new(BTreeSet::new()),
        operator: request.operator_client.0.clone(),
        uid: request.uid.clone(),
        pending_volumes: Mutex::new(Vec::new()),
        pending_claims: Mutex::new(Vec::new()),
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
        workloads: survey.workloads.clone(),
        namespaces: survey.namespaces.clone(),
        failed_namespaces: Mutex::new(BTreeSet::new()),
        cluster,
        related_roles: BTreeSet::new(),
        counts: Mutex::new(ItemOutcomes::default()),
        results: Mutex::new(Results::default()),
        items: items_tx,
        retries: Mutex::new(Vec::new()),
        progress: progress.clone(),
        log: log.clone(),
    };
    for notice in &request.notices {
        match notice.namespace.as_deref() {
            None => run.warn("", notice.message.clone()),
            Some(ns) => {
                let target = transform.target_namespace(ns);
                if namespaces.matches(ns) && tenant.is_none_or(|t| t == target) {
                    run.warn(target, notice.message.clone());
                }
            }
        }
    }
    // The skipped items are recorded as the plan's pass meets them.
    let plan = run.plan(&filters, &survey).await?;
    progress.add_total(plan.total);
    log.info(format!(
        "restoring {} items of {} namespaces{}; {} cluster-scoped items left out (includeClusterResources)",
        plan.total,
        survey.namespaces.len(),
        if spec.dry_run { " as a dry run" } else { "" },
        plan.cluster_left_out
    ));
    // A claim restored from its CSI snapshot gets a new volume: its old one is not restored.
    run.transform.restored_volumes = plan
        .volumes
        .iter()
        .filter(|v| !run.csi_snapshots.snapshots.iter().any(|s| &s.volume == *v))
        .cloned()
        .collect();
    run.related_roles = run.related_cluster_roles(&plan).await;
    let total = plan.total;
    for tier in Tier::ALL {
        let manage_namespaces = tier == Tier::Namespaces && tenant.is_none() && !spec.dry_run;
        if manage_namespaces {
            run.namespaces_ready(settings).await;
        }
        if plan.per_tier.contains_key(&tier) {
            run.restore_tier(tier, &filters, &survey, settings).await?;
        }
        if manage_namespaces {
            run.ensure_namespaces().await;
        }
        if tier == Tier::Crds && !plan.crds.is_empty() && !spec.dry_run {
            run.crds_ready(&plan.crds, settings).await;
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

/// Refuses, for a tenant's restore, CSI snapshots of claims of another namespace: the backup
/// was made in the tenant's namespace and can hold none (defence in depth: the seal already
/// keeps anyone from adding them).
fn foreign_snapshot(
    tenant: &str,
    backup: &str,
    snapshots: &arca_store::archive::CsiSnapshots,
) -> Result<(), arca_store::StoreError> {
    match snapshots.snapshots.iter().find(|s| s.namespace != tenant) {
        None => Ok(()),
        Some(s) => Err(arca_store::StoreError::Unauthentic {
            key: Layout::backup_csi_snapshots(backup),
            detail: format!(
                "it names the snapshot of claim {}/{}, outside namespace {tenant}: nothing is restored",
                s.namespace, s.claim
            ),
        }),
    }
}

/// Refuses a `volumes.json` that pairs a namespace's volume with a repository other than the
/// one Arca keeps that namespace's data in: restoring it would put another namespace's data
/// into this namespace's pods.
fn foreign_repository(
    repository_of: impl Fn(&str) -> String,
    backup: &str,
    snapshots: &arca_store::archive::VolumeSnapshots,
) -> Result<(), arca_store::StoreError> {
    for snapshot in &snapshots.snapshots {
        let own = repository_of(&snapshot.namespace);
        if snapshot.repository != own {
            return Err(arca_store::StoreError::Unauthentic {
                key: Layout::backup_volumes(backup),
                detail: format!(
                    "it names repository {} for volume {} of pod {}/{}, but namespace {}'s data is only ever in {own}: nothing is restored",
                    snapshot.repository,
                    snapshot.volume,
                    snapshot.namespace,
                    snapshot.pod,
                    snapshot.namespace
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod foreign_repository_tests {
    use arca_store::archive::{VolumeSnapshot, VolumeSnapshots};

    fn snapshot(namespace: &str, repository: &str) -> VolumeSnapshot {
        VolumeSnapshot {
            namespace: namespace.into(),
            pod: "db-0".into(),
            volume: "data".into(),
            repository: repository.into(),
            ..VolumeSnapshot::default()
        }
    }

    #[test]
    fn a_volume_paired_with_another_namespaces_repository_is_refused() {
        let own = |ns: &str| format!("volumes/{ns}/");
        let fine = VolumeSnapshots {
            snapshots: vec![
                snapshot("shop", "volumes/shop/"),
                snapshot("web", "volumes/web/"),
            ],
        };
        assert!(super::foreign_repository(own, "b", &fine).is_ok());
        let stolen = VolumeSnapshots {
            snapshots: vec![snapshot("attacker", "volumes/victim/")],
        };
        let e = super::foreign_repository(own, "b", &stolen).expect_err("refused");
        let said = e.to_string();
        assert!(
            said.contains("backups/b/volumes.json") && said.contains("volumes/victim/"),
            "{said}"
        );
        let tenant = |ns: &str| format!("tenants/{ns}/volumes/{ns}/");
        assert!(
            super::foreign_repository(tenant, "b", &fine).is_err(),
            "a tenant's run"
        );
    }
}

#[cfg(test)]
mod foreign_snapshot_tests {
    use arca_store::archive::{CsiSnapshot, CsiSnapshots};

    #[test]
    fn a_tenant_restores_only_its_own_namespace_s_csi_snapshots() {
        let of = |ns: &str| CsiSnapshot {
            namespace: ns.into(),
            claim: "data-0".into(),
            snapshot_handle: format!("snap-of-{ns}"),
            ..CsiSnapshot::default()
        };
        let own = CsiSnapshots {
            snapshots: vec![of("team-a")],
        };
        assert!(super::foreign_snapshot("team-a", "b", &own).is_ok());
        let stolen = CsiSnapshots {
            snapshots: vec![of("team-a"), of("team-b")],
        };
        let said = super::foreign_snapshot("team-a", "b", &stolen)
            .expect_err("refused")
            .to_string();
        assert!(
            said.contains("backups/b/csi-snapshots.json") && said.contains("team-b/data-0"),
            "{said}"
        );
    }
}
