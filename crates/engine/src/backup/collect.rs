//! Listing resource types concurrently and streaming their items into the archive.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use arca_store::archive::{EncodedFrame, Item, Results, encode_frames};
use kube::Client;
use tokio::sync::mpsc;

use super::{
    list::{ClaimVolume, ListError, PodClaims, RawItem, fetch_page, list_url, next_limit},
    ordered::OrderedResources,
    plan::{ListScope, ListTask},
    related::get_item,
    volumes::{PodVolumes, VolumeRequest},
};
use crate::{
    catalogue::ResourceType,
    filters::{LabelFilter, NamespaceFilter, excluded_by_label},
    progress::Progress,
    runlog::RunLog,
};

/// What items point at, gathered while listing, for the related-items pass.
#[derive(Debug, Default)]
pub struct Related {
    /// (namespace, claim) of pods' volumes.
    pub claims_of_pods: BTreeSet<(String, String)>,
    /// The first pod volume written that mounts each (namespace, claim): what a claim's
    /// data moved from its CSI snapshot is recorded as (and restored into).
    pub claim_mounts: std::collections::BTreeMap<(String, String), super::volumes::VolumeRequest>,
    /// (namespace, name) of claims written.
    pub claims_written: BTreeSet<(String, String)>,
    /// Volumes bound to claims written.
    pub volumes_of_claims: BTreeSet<String>,
    /// (namespace, name) of service accounts written.
    pub service_accounts: BTreeSet<(String, String)>,
    /// `plural.group` of custom resource types with items written.
    pub custom_types: BTreeSet<String>,
    /// (`plural.group`, name) of cluster-scoped items written.
    pub cluster_written: BTreeSet<(String, String)>,
}

/// State shared by the list tasks of one backup.
pub struct Collector {
    pub client: Client,
    pub namespaces: NamespaceFilter,
    pub labels: LabelFilter,
    /// `plural.group` of types defined by CRDs.
    pub custom_types: BTreeSet<String>,
    /// Pods whose items must not be written (a `Fail` pre hook failed), by (namespace, name).
    pub skipped_pods: BTreeSet<(String, String)>,
    pub page_size: u32,
    /// `defaultVolumesToFsBackup`: every data volume of a pod is asked for, unless excluded.
    pub volumes_default_all: bool,
    pub mtime: u64,
    pub frames: mpsc::Sender<EncodedFrame>,
    pub progress: Arc<Progress>,
    pub log: RunLog,
    pub related: Mutex<Related>,
    pub results: Mutex<Results>,
    /// Pod volumes whose data is asked for, in the order their pods were written.
    pub volume_requests: Mutex<Vec<VolumeRequest>>,
    /// The impersonated ServiceAccount user, if any (see `BackupRequest::acting_as`).
    pub acting_as: Option<String>,
    /// `orderedResources`: these objects are written first, in order.
    pub ordered: OrderedResources,
    /// Resource policies decide: every data volume of a pod is a candidate, not only those
    /// its annotations ask for.
    pub volume_candidates: bool,
}

impl Collector {
    /// Runs one list task to the end. Failures are recorded as errors of the backup (it
    /// ends PartiallyFailed), except a closed archive, which stops everything.
    /// Pages are pipelined: the next page is fetched while the previous one is encoded and
    /// handed to the archive, so Arca's own work hides behind the apiserver's.
    pub async fn run(&self, task: ListTask) -> Result<(), Stopped> {
        let first = self.write_ordered(&task).await?;
        let url = list_url(&task.resource, &task.scope);
        let selector = self.labels.server_side();
        let mut limit = self.page_size;
        let mut token: Option<String> = None;
        let mut previous: Vec<RawItem> = Vec::new();
        loop {
            let fetch = fetch_page(
                &self.client,
                &url,
                limit,
                token.as_deref(),
                selector.as_deref(),
                &task.resource,
            );
            let (page, written) = tokio::join!(
                fetch,
                self.write(&task.resource, std::mem::take(&mut previous))
            );
            written?;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    self.list_failed(&task, &e);
                    return Ok(());
                }
            };
            limit = next_limit(self.page_size, &page);
            token = page.continue_token.clone();
            previous = page
                .items
                .into_iter()
                .filter(|item| {
                    let meta = &item.head.metadata;
                    let key = (meta.namespace.as_deref(), meta.name.as_str());
                    !first.contains(&key) && self.wanted(&task, item)
                })
                .collect();
            if token.is_none() {
                return self.write(&task.resource, previous).await;
            }
        }
    }

    /// Writes the objects `orderedResources` names for this list, in order (each read with
    /// a GET, and chosen as a listed one would be); returns the (namespace, name) of every
    /// ordered object of the list's scope, for the list to skip.
    async fn write_ordered<'a>(
        &'a self,
        task: &'a ListTask,
    ) -> Result<BTreeSet<(Option<&'a str>, &'a str)>, Stopped> {
        let gr = task.resource.group_resource();
        let names: Vec<_> = self
            .ordered
            .in_scope(&gr, &task.scope, |ns| self.namespaces.matches(ns))
            .collect();
        let mut items = Vec::new();
        for n in &names {
            let ns = n.namespace.as_deref();
            match get_item(&self.client, &task.resource, ns, &n.name).await {
                // A GET has no server-side selector: the labels are checked here.
                Ok(Some(item))
                    if self.wanted(task, &item)
                        && self.labels.matches(&item.head.metadata.labels) =>
                {
                    items.push(item)
                }
                Ok(Some(_)) => {}
                Ok(None) => self.record_warning(
                    ns,
                    format!(
                        "orderedResources names {gr} {}, which does not exist",
                        ns.map(|ns| format!("{ns}/{}", n.name))
                            .unwrap_or_else(|| n.name.clone())
                    ),
                ),
                Err(e) => self.record_error(ns, format!("getting {gr} {}: {e}", n.name)),
            }
        }
        self.write(&task.resource, items).await?;
        Ok(names
            .iter()
            .map(|n| (n.namespace.as_deref(), n.name.as_str()))
            .collect())
    }

    fn wanted(&self, task: &ListTask, item: &RawItem) -> bool {
        let meta = &item.head.metadata;
        if meta.deletion_timestamp.is_some() || excluded_by_label(&meta.labels) {
            return false;
        }
        if task.scope == ListScope::AllNamespaces
            && !meta
                .namespace
                .as_deref()
                .is_some_and(|ns| self.namespaces.matches(ns))
        {
            return false;
        }
        if task.resource.group_resource() == "pods" {
            let key = (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone(),
            );
            if self.skipped_pods.contains(&key) {
                return false;
            }
        }
        // A server-side selector already filtered; an OR of selectors is checked here.
        self.labels.server_side().is_some() || self.labels.matches(&meta.labels)
    }

    /// Writes items (already chosen) of one type: records what they point at, encodes them
    /// off the async threads, and hands the frames to the archive.
    pub async fn write(&self, rt: &ResourceType, items: Vec<RawItem>) -> Result<(), Stopped> {
        if items.is_empty() {
            return Ok(());
        }
        self.progress.add_total(items.len() as u64);
        self.note_references(rt, &items);
        let archive_items: Vec<Item> = items
            .into_iter()
            .map(|raw| Item {
                group: rt.group.clone(),
                version: rt.version.clone(),
                kind: rt.kind.clone(),
                resource: rt.plural.clone(),
                namespace: raw
                    .head
                    .metadata
                    .namespace
                    .clone()
                    .filter(|_| rt.namespaced),
                name: raw.head.metadata.name,
                json: raw.json,
            })
            .collect();
        let mtime = self.mtime;
        let frames = tokio::task::spawn_blocking(move || encode_frames(&archive_items, mtime))
            .await
            .map_err(|_| Stopped)?
            .map_err(|e| {
                self.log.error(format!("encoding items: {e}"));
                Stopped
            })?;
        for frame in frames {
            self.frames.send(frame).await.map_err(|_| Stopped)?;
        }
        Ok(())
    }

    fn note_references(&self, rt: &ResourceType, items: &[RawItem]) {
        let gr = rt.group_resource();
        if gr == "pods" {
            self.note_volume_requests(items);
        }
        let Ok(mut related) = self.related.lock() else {
            return;
        };
        for item in items {
            let meta = &item.head.metadata;
            let ns = meta.namespace.clone().unwrap_or_default();
            match gr.as_str() {
                "pods" => {
                    if let Ok(pod) = serde_json::from_slice::<PodClaims>(&item.json) {
                        for claim in pod.claim_names() {
                            related
                                .claims_of_pods
                                .insert((ns.clone(), claim.to_string()));
                        }
                    }
                    if let Ok(pod) = serde_json::from_slice::<PodVolumes>(&item.json) {
                        for mount in pod.candidates(false) {
                            if let Some(claim) = mount.claim.clone() {
                                related
                                    .claim_mounts
                                    .entry((mount.namespace.clone(), claim))
                                    .or_insert(mount);
                            }
                        }
                    }
                }
                "persistentvolumeclaims" => {
                    related
                        .claims_written
                        .insert((ns.clone(), meta.name.clone()));
                    if let Ok(claim) = serde_json::from_slice::<ClaimVolume>(&item.json)
                        && let Some(volume) = claim.volume_name()
                    {
                        related.volumes_of_claims.insert(volume.to_string());
                    }
                }
                "serviceaccounts" => {
                    related
                        .service_accounts
                        .insert((ns.clone(), meta.name.clone()));
                }
                _ => {}
            }
            if !rt.namespaced {
                related
                    .cluster_written
                    .insert((gr.clone(), meta.name.clone()));
            }
        }
        if self.custom_types.contains(&gr) {
            related.custom_types.insert(gr);
        }
    }

    /// Records the pod volumes whose data is asked for; they are backed up once every item
    /// is written (see [`crate::pod_volumes`]).
    fn note_volume_requests(&self, items: &[RawItem]) {
        let mut found = Vec::new();
        for item in items {
            if let Ok(pod) = serde_json::from_slice::<PodVolumes>(&item.json) {
                found.extend(if self.volume_candidates {
                    pod.candidates(self.volumes_default_all)
                } else {
                    pod.requests(self.volumes_default_all)
                });
            }
        }
        if found.is_empty() {
            return;
        }
        if let Ok(mut requests) = self.volume_requests.lock() {
            requests.extend(found);
        }
    }

    /// A failed list is an error of the backup, except a type removed since discovery
    /// (nothing of it exists any more, so nothing is missing) or one the impersonated
    /// ServiceAccount may not read (its RBAC decides): those are warnings.
    fn list_failed(&self, task: &ListTask, error: &ListError) {
        let gr = task.resource.group_resource();
        let scope = match &task.scope {
            ListScope::Namespace(ns) => Some(ns.as_str()),
            ListScope::AllNamespaces => Some(""),
            ListScope::Cluster => None,
        };
        if error.type_gone() {
            self.record_warning(
                scope,
                format!("{gr} is no longer served by the apiserver (its type was removed during the backup): none backed up"),
            );
            return;
        }
        if let Some(user) = &self.acting_as
            && error.is_forbidden()
        {
            let place = scope
                .filter(|ns| !ns.is_empty())
                .map(|ns| format!(" in {ns}"))
                .unwrap_or_default();
            self.record_warning(
                scope,
                format!("{user} may not list {gr}{place}: none backed up (bind it a role that may, or exclude the type)"),
            );
            return;
        }
        let (namespace, message) = match &task.scope {
            ListScope::Namespace(ns) => {
                (Some(ns.as_str()), format!("listing {gr} in {ns}: {error}"))
            }
            ListScope::AllNamespaces => (Some(""), format!("listing {gr}: {error}")),
            ListScope::Cluster => (None, format!("listing {gr}: {error}")),
        };
        self.log.error(message.clone());
        if let Ok(mut results) = self.results.lock() {
            results.errors.add(namespace, message);
        }
    }

    pub fn record_error(&self, namespace: Option<&str>, message: String) {
        self.log.error(message.clone());
        if let Ok(mut results) = self.results.lock() {
            results.errors.add(namespace, message);
        }
    }

    pub fn record_warning(&self, namespace: Option<&str>, message: String) {
        self.log.warn(message.clone());
        if let Ok(mut results) = self.results.lock() {
            results.warnings.add(namespace, message);
        }
    }
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

/// The archive stopped accepting frames (a storage failure, reported by the writer).
#[derive(Debug, Clone, Copy)]
pub struct Stopped;
