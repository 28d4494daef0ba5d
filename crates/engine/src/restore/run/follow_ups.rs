//! What follows the items: the restored pods' volume data and their exec hooks.

use super::*;

impl Run<'_> {
    /// A restored pod with snapshots waits for its data; one that already existed (and
    /// was kept) does not get it, and the restore says so.
    pub(super) fn note_volumes(
        &self,
        entry: &IndexEntry,
        applied: &Applied,
        snapshots: Vec<VolumeSnapshot>,
    ) {
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

    /// A recreated claim the backup holds alone waits for its data, like a pod's volumes.
    pub(super) fn note_claim(
        &self,
        entry: &IndexEntry,
        applied: &Applied,
        snapshot: VolumeSnapshot,
    ) {
        let namespace = self
            .transform
            .target_namespace(entry.namespace.as_deref().unwrap_or_default())
            .to_string();
        let claim = &entry.name;
        match applied.outcome {
            Outcome::Created if !self.restore_volumes => self.log.info(format!(
                "claim {namespace}/{claim}: restorePVs is false, it is left empty"
            )),
            Outcome::Created if self.applier.dry_run => self.log.info(format!(
                "dry run: claim {namespace}/{claim} would get its data through a pod of its own"
            )),
            Outcome::Created => {
                if let Ok(mut pending) = self.pending_claims.lock() {
                    pending.push(ClaimToFill {
                        namespace,
                        claim: claim.clone(),
                        snapshot,
                    });
                }
            }
            _ => self.warn(
                &namespace,
                format!(
                    "claim {namespace}/{claim} was not created by this restore: its data is not restored into it"
                ),
            ),
        }
    }

    /// Fills the recreated pods' volumes, and the recreated claims no pod mounts, through
    /// the node agents.
    pub(super) async fn restore_volumes(&self, request: &RestoreRequest) {
        let pods = self
            .pending_volumes
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        let claims = self
            .pending_claims
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        if pods.is_empty() && claims.is_empty() {
            return;
        }
        let job = match &request.volumes {
            Ok(job) => job,
            Err(why) => {
                let pods = pods
                    .iter()
                    .map(|p| (&p.namespace, format!("pod {}/{}", p.namespace, p.pod)));
                let claims = claims
                    .iter()
                    .map(|c| (&c.namespace, format!("claim {}/{}", c.namespace, c.claim)));
                let messages: Vec<(String, String)> = pods
                    .chain(claims)
                    .map(|(ns, what)| {
                        (
                            ns.clone(),
                            format!("{what}: the data of its volumes is not restored: {why}"),
                        )
                    })
                    .collect();
                self.report_errors(messages);
                return;
            }
        };
        let run = RestoreRun {
            name: &request.name,
            uid: &request.uid,
        };
        let populate = pod_volumes::populate::Populate {
            client: &self.client,
            operator: &self.operator,
            image: request.restore_helper_image.as_deref(),
            volume_timeout: job.timeout,
        };
        let started = match claims.is_empty() {
            true => Default::default(),
            false => pod_volumes::populate::start(&populate, run, claims, &self.log).await,
        };
        self.report_errors(started.errors);
        let all = pods.into_iter().chain(started.pods).collect();
        let outcome = pod_volumes::restore::restore(&self.client, job, run, all, &self.log).await;
        pod_volumes::populate::finish(&self.client, &started.jobs, &self.log).await;
        self.report_errors(outcome.errors);
    }

    /// Logs each (namespace, message) and adds it to the results' errors.
    fn report_errors(&self, errors: Vec<(String, String)>) {
        if let Ok(mut results) = self.results.lock() {
            for (ns, e) in errors {
                self.log.error(e.clone());
                results.errors.add(Some(&ns), e);
            }
        }
    }

    /// The restore hooks of a backed-up pod; a bad annotation is a warning, and no hook.
    pub(super) fn pod_hooks(&self, entry: &IndexEntry, object: &Value) -> PodRestoreHooks {
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
    pub(super) async fn run_exec_hooks(&self) -> HookStatus {
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
}
