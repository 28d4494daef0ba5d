//! One item of a restore: decode, filter, transform, write, and whether to try it again.

use super::*;

impl Run<'_> {
    /// Restores one item; None when its labels leave it out of the restore.
    pub(super) async fn restore_item(&self, entry: &IndexEntry, json: Bytes) -> Option<Applied> {
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
        if !self.labels.is_empty() && !self.labels.matches(&crate::rules::labels_of(&object)) {
            return None;
        }
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
        if let Some(why) = skip::by_content(entry, &object, !snapshots.is_empty(), &self.restored())
        {
            return skip(why.to_string());
        }
        if gr == "persistentvolumes"
            && let Some(s) = self
                .csi_snapshots
                .snapshots
                .iter()
                .find(|s| s.volume == entry.name)
        {
            return skip(format!(
                "claim {}/{} is restored from its CSI snapshot, onto a new volume",
                s.namespace, s.claim
            ));
        }
        if gr == "persistentvolumes"
            && let Some((ns, claim)) =
                super::super::reprovision::reprovisioned_claim(&object, &self.volume_snapshots)
        {
            let reason = format!(
                "claim {ns}/{claim} gets a new volume from its storage class; the node agent restores its data"
            );
            if let Ok(mut made_again) = self.reprovisioned_volumes.lock() {
                made_again.insert(entry.name.clone());
            }
            return skip(reason);
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
        // Rules match the item as backed up (its own namespace), as Velero's do.
        if let Some(modifiers) = &self.modifiers
            && let Err(e) = modifiers.apply(&gr, &mut object)
        {
            return fail(e);
        }
        self.transform.apply(&gr, &mut object, false);
        if gr == "persistentvolumeclaims" {
            // Its volume's tier came first: a volume skipped there is made again for it.
            if let Ok(made_again) = self.reprovisioned_volumes.lock() {
                super::super::reprovision::unbind_claim(&mut object, &made_again);
            }
            if let Err(e) = self.claim_from_snapshot(entry, &mut object).await {
                return fail(e);
            }
        }
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
        if gr == "persistentvolumeclaims"
            && let Some(snapshot) = self
                .volume_snapshots
                .of_claim_only(entry.namespace.as_deref().unwrap_or_default(), &entry.name)
        {
            self.note_claim(entry, &applied, snapshot.clone());
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

    /// Points a claim the backup has a CSI snapshot of at that snapshot (the content and
    /// VolumeSnapshot made first), unless `restorePVs` is false. A claim that exists already
    /// is left to the existing resource policy: nothing is made for it.
    async fn claim_from_snapshot(
        &self,
        entry: &IndexEntry,
        object: &mut Value,
    ) -> Result<(), String> {
        let ns = entry.namespace.as_deref().unwrap_or_default();
        let Some(record) = self.csi_snapshots.of_claim(ns, &entry.name) else {
            return Ok(());
        };
        if !self.restore_volumes {
            // `restorePVs: false`: the claim comes back without its data.
            return Ok(());
        }
        let target = self.transform.target_namespace(ns).to_string();
        let claims: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            kube::Api::namespaced(self.client.clone(), &target);
        if claims
            .get_opt(&entry.name)
            .await
            .map_err(|e| format!("reading claim {target}/{}: {e}", entry.name))?
            .is_some()
        {
            return Ok(());
        }
        let job = crate::csi::restore::RestoreJob {
            run_client: &self.client,
            operator: &self.operator,
            restore: &self.transform.restore_name,
            restore_uid: &self.uid,
            dry_run: self.applier.dry_run,
        };
        let snapshot =
            crate::csi::restore::provision_from_snapshot(job, record, &target, object).await?;
        self.log.info(format!(
            "claim {target}/{}: provisioned from CSI snapshot {} (VolumeSnapshot {snapshot})",
            entry.name, record.snapshot_handle
        ));
        Ok(())
    }

    pub(super) async fn write(
        &self,
        entry: &IndexEntry,
        object: Value,
        status: Option<Value>,
    ) -> Applied {
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

    pub(super) fn maybe_retry(
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

    pub(super) fn target(&self, entry: &IndexEntry, object: &Value) -> Option<Target> {
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

    /// The ClusterRoles bound to restored service accounts (read ahead from the bindings).
    pub(super) async fn related_cluster_roles(&self, plan: &Plan) -> BTreeSet<String> {
        let mut roles = BTreeSet::new();
        if self.cluster != ClusterResources::RelatedOnly {
            return roles;
        }
        for &frame in &plan.binding_frames {
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
}

pub(super) fn type_of_entry(e: &IndexEntry) -> ResourceType {
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
