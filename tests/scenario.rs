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
    FaultyProxy, env, kubectl_apply,
    operator::{
        Operator, backup_done, create_location, phase_of_backup, phase_of_restore, restore_done,
        s3_location, settings,
    },
    tenant_account,
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
    /// The proxy a flaky location reaches the bucket through (see [`Scenario::prepare_flaky`]).
    proxy: Option<FaultyProxy>,
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
        scenario.start_operator_with(adjust).await;
        scenario
    }

    /// A tenant's scenario: the app namespace is the tenant's, its ServiceAccount `arca` is
    /// bound to `edit` there (what the tenant's runs act as), and the operator, living in the
    /// operator namespace, handles the tenant's namespace.
    pub async fn start_tenant(tag: &str) -> Self {
        let mut scenario = Self::prepare(tag).await;
        tenant_account(scenario.env, &scenario.app.name, "arca", "edit");
        let tenant = scenario.app.name.clone();
        scenario
            .start_operator_with(|s| s.watch_namespace = Some(tenant))
            .await;
        scenario
    }

    /// Namespaces, prefix and location, no operator yet (a test that fills the cluster
    /// first, or runs `arca server` itself).
    pub async fn prepare(tag: &str) -> Self {
        Self::prepare_on(env(), tag).await
    }

    /// As [`Scenario::prepare`], in `env` (the real node's environment) instead of the shared
    /// one.
    pub async fn prepare_on(env: &'static TestEnv, tag: &str) -> Self {
        let scenario = Self::without_location_on(env, tag).await;
        s3_location(
            scenario.env,
            &scenario.client,
            &scenario.arca.name,
            "default",
            &scenario.prefix.prefix,
        )
        .await;
        scenario
    }

    /// As [`Scenario::prepare`], but the only location, `flaky` (the default), reaches the
    /// bucket through a [`FaultyProxy`] that breaks every connection once `budget` bytes have
    /// gone upstream: storage failing mid-upload. The proxy lives as long as the scenario.
    pub async fn prepare_flaky(tag: &str, budget: u64) -> Self {
        let mut scenario = Self::without_location(tag).await;
        let s3 = &scenario.env.env.s3;
        let proxy = FaultyProxy::start(&s3.endpoint, budget).await;
        create_location(
            s3,
            &scenario.client,
            &scenario.arca.name,
            "flaky",
            &scenario.prefix.prefix,
            &proxy.endpoint,
            &s3.bucket,
            &s3.secret_access_key,
        )
        .await;
        scenario.proxy = Some(proxy);
        scenario
    }

    /// As [`Scenario::prepare`], with location `default` on `bucket` of the test S3 server
    /// (the object-locked one, [`arca_testenv::LOCKED_BUCKET`]), under the scenario's prefix.
    pub async fn prepare_on_bucket(tag: &str, bucket: &str) -> Self {
        let scenario = Self::without_location(tag).await;
        let s3 = &scenario.env.env.s3;
        create_location(
            s3,
            &scenario.client,
            &scenario.arca.name,
            "default",
            &scenario.prefix.prefix,
            &s3.endpoint,
            bucket,
            &s3.secret_access_key,
        )
        .await;
        scenario
    }

    /// As [`Scenario::start`], in `env` (the real node's environment) instead of the shared
    /// one.
    pub async fn start_on(env: &'static TestEnv, tag: &str) -> Self {
        let mut scenario = Self::prepare_on(env, tag).await;
        scenario.start_operator().await;
        scenario
    }

    async fn without_location(tag: &str) -> Self {
        Self::without_location_on(env(), tag).await
    }

    async fn without_location_on(env: &'static TestEnv, tag: &str) -> Self {
        let client = env.client().await.expect("client");
        let arca = env.namespace("arca").await.expect("namespace");
        let app = env.namespace(tag).await.expect("namespace");
        let prefix = env.prefix();
        Self {
            env,
            client,
            arca,
            app,
            prefix,
            operator: None,
            proxy: None,
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

    /// Another namespace of the test (`<tag>-<random>`), removed when it is dropped.
    pub async fn namespace(&self, tag: &str) -> TestNamespace {
        self.env.namespace(tag).await.expect("namespace")
    }

    /// Starts the operator of a prepared scenario.
    pub async fn start_operator(&mut self) {
        self.start_operator_with(|_| {}).await;
    }

    /// Starts the operator of a prepared scenario, with its settings adjusted first.
    async fn start_operator_with(&mut self, adjust: impl FnOnce(&mut Settings)) {
        let mut operator_settings = settings(&self.arca.name);
        adjust(&mut operator_settings);
        self.operator = Some(Operator::start(self.env, operator_settings).await);
    }

    /// Applies Backup `name` with `spec` (a YAML flow mapping such as `{ttl: 1h}`) in the
    /// operator namespace, without waiting.
    pub fn apply_backup(&self, name: &str, spec: &str) {
        kubectl_apply(
            self.env,
            &format!(
                "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: {name}, namespace: {}}}\nspec: {spec}\n",
                self.arca.name
            ),
        );
    }

    /// Waits until Backup `name` of the operator namespace ends (within 120 s).
    pub async fn backup_done(&self, name: &str) -> Backup {
        self.backup_done_within(name, WAIT).await
    }

    /// Waits until Backup `name` of the operator namespace ends, within `timeout`.
    pub async fn backup_done_within(&self, name: &str, timeout: Duration) -> Backup {
        backup_done(&self.client, &self.arca.name, name, timeout).await
    }

    /// Applies Backup `name` with `spec` in the operator namespace and waits (120 s) until
    /// it ends.
    pub async fn backup(&self, name: &str, spec: &str) -> Backup {
        self.backup_within(name, spec, WAIT).await
    }

    /// As [`Scenario::backup`], waiting up to `timeout`.
    pub async fn backup_within(&self, name: &str, spec: &str, timeout: Duration) -> Backup {
        self.apply_backup(name, spec);
        self.backup_done_within(name, timeout).await
    }

    /// The spec of a backup of the app namespace: `{includedNamespaces: [<app>]}`.
    pub fn app_spec(&self) -> String {
        format!("{{includedNamespaces: [{}]}}", self.app.name)
    }

    /// A backup of the app namespace that must end Completed.
    pub async fn completed_backup(&self, name: &str) -> Backup {
        self.completed_backup_with(name, &self.app_spec()).await
    }

    /// A backup with `spec` that must end Completed.
    pub async fn completed_backup_with(&self, name: &str, spec: &str) -> Backup {
        let backup = self.backup(name, spec).await;
        assert_completed(&backup);
        backup
    }

    /// Applies Restore `name` with `spec` in the operator namespace, without waiting.
    pub fn apply_restore(&self, name: &str, spec: &str) {
        kubectl_apply(
            self.env,
            &format!(
                "apiVersion: arca.dev/v1alpha1\nkind: Restore\nmetadata: {{name: {name}, namespace: {}}}\nspec: {spec}\n",
                self.arca.name
            ),
        );
    }

    /// Applies Restore `name` with `spec` in the operator namespace and waits (120 s) until
    /// it ends.
    pub async fn restore(&self, name: &str, spec: &str) -> Restore {
        self.restore_within(name, spec, WAIT).await
    }

    /// As [`Scenario::restore`], waiting up to `timeout`.
    pub async fn restore_within(&self, name: &str, spec: &str, timeout: Duration) -> Restore {
        self.apply_restore(name, spec);
        self.restore_done_within(name, timeout).await
    }

    /// Waits until Restore `name` of the operator namespace ends, within `timeout`.
    pub async fn restore_done_within(&self, name: &str, timeout: Duration) -> Restore {
        restore_done(&self.client, &self.arca.name, name, timeout).await
    }

    /// A restore that must end Completed.
    pub async fn completed_restore(&self, name: &str, spec: &str) -> Restore {
        let restore = self.restore(name, spec).await;
        assert_restored(&restore);
        restore
    }

    /// Stops the operator (work in flight finishes first).
    pub async fn stop(mut self) {
        if let Some(operator) = self.operator.take() {
            operator.stop().await;
        }
    }
}

/// How long a scenario's backup or restore may take, unless the test says otherwise.
const WAIT: Duration = Duration::from_secs(120);

/// Insists that `backup` ended Completed, naming it and its status otherwise.
pub fn assert_completed(backup: &Backup) {
    assert_eq!(
        phase_of_backup(backup),
        BackupPhase::Completed,
        "backup {}: {:?}",
        backup.metadata.name.as_deref().unwrap_or_default(),
        backup.status
    );
}

/// Insists that `restore` ended Completed, naming it and its status otherwise.
pub fn assert_restored(restore: &Restore) {
    assert_eq!(
        phase_of_restore(restore),
        RestorePhase::Completed,
        "restore {}: {:?}",
        restore.metadata.name.as_deref().unwrap_or_default(),
        restore.status
    );
}
