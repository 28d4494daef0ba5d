//! Leader election on a coordination.k8s.io Lease, so two replicas never run the same work.
//!
//! As client-go does it: a lease is taken when it is free, expired, or ours. Expiry is judged
//! by when this process last saw the lease's record change, never by comparing clocks across
//! machines. The leader renews every `renew_every`; if it cannot renew for a whole lease
//! duration it has lost the lease, and the operator stops (to restart as a follower). On a
//! graceful stop the leader releases the lease, so another replica takes over at once.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::time::Instant;

/// How the lease is held.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// The Lease's namespace (the operator's).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// Who this process is (the pod's name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    pub retry_every: Duration,
}

impl LeaderElection {
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: "arca-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// The lease as last observed, and when (by this process's clock).
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

/// Holds (or waits for) the lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderElection,
    observed: Option<Observed>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Elector {
    pub fn new(client: Client, config: LeaderElection) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&mut self) {
        let mut announced = false;
        loop {
            match self.try_take().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "leading");
                    return;
                }
                Ok(false) => {
                    if !announced {
                        let holder = self
                            .observed
                            .as_ref()
                            .and_then(|o| o.holder.clone())
                            .unwrap_or_default();
                        tracing::info!(lease = %self.config.name, %holder, "another replica leads; waiting");
                        announced = true;
                    }
                }
                Err(e) => tracing::warn!(lease = %self.config.name, "taking the lease: {e}"),
            }
            tokio::time::sleep(self.config.retry_every).await;
        }
    }

    /// Renews the lease until it is lost; returns when it is.
    pub async fn keep(&mut self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_every).await;
            match self.try_take().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.config.name, "another replica took the lease");
                    return;
                }
                Err(e) => tracing::warn!(lease = %self.config.name, "renewing the lease: {e}"),
            }
            if last_renewal.elapsed() > self.config.lease_duration {
                tracing::error!(lease = %self.config.name, "could not renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up (a graceful stop), so another replica need not wait for it to expire.
    pub async fn release(&mut self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                let _ = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }

    /// Takes or renews the lease if it is free, expired or ours; true when ours.
    async fn try_take(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let me = self.config.identity.clone();
        let duration = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew: spec.renew_time.clone(),
                at: Instant::now(),
            });
        }
        let held_duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration).max(0) as u64);
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() > held_duration);
        let ours = holder.as_deref() == Some(me.as_str());
        if !(holder.is_none() || ours || expired) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(duration),
            acquire_time: if ours {
                spec.acquire_time
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..spec
        });
        // The resourceVersion makes this a compare-and-swap: of two replicas seeing the lease
        // free, one wins and the other gets a conflict.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                let spec = updated.spec.unwrap_or_default();
                self.observed = Some(Observed {
                    holder: spec.holder_identity,
                    renew: spec.renew_time,
                    at: Instant::now(),
                });
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
