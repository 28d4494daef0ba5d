//! The prelude most e2e tests share: an operator namespace and an app namespace, a prefix
//! of the bucket with a default location in it, an in-process operator confined to the
//! operator namespace; and the steps they repeat (apply a Backup or Restore, wait for it to
//! end, insist it Completed).

use std::time::Duration;

use arca_api::{Backup, BackupPhase, Restore, RestorePhase};
use arca_operator::Settings;
use arca_testenv::{TestEnv, TestNamespace, TestPrefix};
use kube::Client;

use crate::{
    env, kubectl_apply,
    operator::{
        Operator, backup_done, phase_of_backup, phase_of_restore, restore_done, s3_location,
        settings,
    },
};

/// A running scenario. Its namespaces and prefix are removed when it is dropped; stop the
/// operator with [`Scenario::stop`].
pub struct Scenario {
    pub env: &'static TestEnv,
    pub client: Client,
    /// The operator's namespace: Backups and Restores go here.
    pub arca: TestNamespace,
    /// The namespace the test's application lives in (`<tag>-<random>`).
    pub app: TestNamespace,
    pub prefix: TestPrefix,
    operator: Option<Operator>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("arca", &self.arca.name)
            .field("app", &self.app.name)
            .field("prefix", &self.prefix.prefix)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// Namespaces, prefix, location `default`, and the operator with the test settings.
    pub async fn start(tag: &str) -> Self {
        Self::start_with(tag, |_| {}).await
    }

    /// As [`Scenario::start`], with the operator's settings adjusted first.
    pub async fn start_with(tag: &str, adjust: impl FnOnce(&mut Settings)) -> Self {
        let mut scenario = Self::prepare(tag).await;
        let mut operator_settings = settings(&scenario.arca.name);
        adjust(&mut operator_settings);
        scenario.operator = Some(Operator::start(scenario.env, operator_settings).await);
        scenario
    }

    /// Namespaces, prefix and location, no operator yet (a test that fills the cluster
    /// first, or runs `arca server` itself).
    pub async fn prepare(tag: &str) -> Self {
        let env = env();
        let client = env.client().await.expect("client");
        let arca = env.namespace("arca").await.expect("namespace");
        let app = env.namespace(tag).await.expect("namespace");
        let prefix = env.prefix();
        s3_location(env, &client, &arca.name, "default", &prefix.prefix).await;
        Self {
            env,
            client,
            arca,
            app,
            prefix,
            operator: None,
        }
    }

    /// The pieces a test body uses: `let (env, client, arca, app, prefix) = s.parts();`.
    pub fn parts(
        &self,
    ) -> (
        &'static TestEnv,
        &Client,
        &TestNamespace,
        &TestNamespace,
        &TestPrefix,
    ) {
        (self.env, &self.client, &self.arca, &self.app, &self.prefix)
    }

    /// Starts the operator of a prepared scenario.
    pub async fn start_operator(&mut self) {
        self.operator = Some(Operator::start(self.env, settings(&self.arca.name)).await);
    }

    /// Applies Backup `name` with `spec` (a YAML flow mapping such as `{ttl: 1h}`) in the
    /// operator namespace and waits until it ends.
    pub async fn backup(&self, name: &str, spec: &str) -> Backup {
        kubectl_apply(
            self.env,
            &format!(
                "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: {name}, namespace: {}}}\nspec: {spec}\n",
                self.arca.name
            ),
        );
        backup_done(
            &self.client,
            &self.arca.name,
            name,
            Duration::from_secs(120),
        )
        .await
    }

    /// A backup of the app namespace that must end Completed.
    pub async fn completed_backup(&self, name: &str) -> Backup {
        let backup = self
            .backup(
                name,
                &format!("{{includedNamespaces: [{}]}}", self.app.name),
            )
            .await;
        assert_eq!(
            phase_of_backup(&backup),
            BackupPhase::Completed,
            "backup {name}: {:?}",
            backup.status
        );
        backup
    }

    /// Applies Restore `name` with `spec` in the operator namespace and waits until it ends.
    pub async fn restore(&self, name: &str, spec: &str) -> Restore {
        kubectl_apply(
            self.env,
            &format!(
                "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: {name}, namespace: {}}}\nspec: {spec}\n",
                self.arca.name
            ),
        );
        restore_done(
            &self.client,
            &self.arca.name,
            name,
            Duration::from_secs(120),
        )
        .await
    }

    /// A restore that must end Completed.
    pub async fn completed_restore(&self, name: &str, spec: &str) -> Restore {
        let restore = self.restore(name, spec).await;
        assert_eq!(
            phase_of_restore(&restore),
            RestorePhase::Completed,
            "restore {name}: {:?}",
            restore.status
        );
        restore
    }

    /// Stops the operator (work in flight finishes first).
    pub async fn stop(mut self) {
        if let Some(operator) = self.operator.take() {
            operator.stop().await;
        }
    }
}
