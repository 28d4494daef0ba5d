//! The fixture tests use: one environment per test process, a random namespace and a fresh
//! S3 prefix per test.

use std::{
    process::{Command, Stdio},
    sync::OnceLock,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};

use crate::{Environment, TestenvError, UpOptions};

/// The environment of this test process.
#[derive(Debug)]
pub struct TestEnv {
    pub env: Environment,
}

static SHARED: OnceLock<Result<TestEnv, String>> = OnceLock::new();
static SHARED_REAL: OnceLock<Result<TestEnv, String>> = OnceLock::new();

impl TestEnv {
    /// The environment named by `ARCA_TESTENV` (which must be up), or else a fresh one,
    /// started on first use and torn down by a watchdog when this process exits.
    /// Never skips: when the environment cannot start, this is an error that says why.
    pub fn shared() -> Result<&'static TestEnv, String> {
        SHARED
            .get_or_init(|| {
                std::thread::spawn(|| start_or_load(false))
                    .join()
                    .unwrap_or_else(|_| Err("starting the test environment panicked".into()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Like [`TestEnv::shared`], with a real kubelet node: the environment named by
    /// `ARCA_TESTENV` must have one (`make testenv-up NODE=real`), and a fresh one gets one,
    /// with the CSI stack on it (as `make e2e` starts the node suite's), so that
    /// [`TestEnv::shared_with_csi`] is the same environment.
    /// Never skips: without root or the node's packages this is an error that says why.
    pub fn shared_with_real_node() -> Result<&'static TestEnv, String> {
        SHARED_REAL
            .get_or_init(|| {
                let env = std::thread::spawn(|| start_or_load(true))
                    .join()
                    .unwrap_or_else(|_| Err("starting the test environment panicked".into()))?;
                match env.env.real_node {
                    Some(_) => Ok(env),
                    None => Err(format!(
                        "environment {} has no real node: start it with `make testenv-up NAME={} NODE=real`",
                        env.env.name, env.env.name
                    )),
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Like [`TestEnv::shared_with_real_node`] (the same environment), which must have the CSI
    /// stack (`make testenv-up NODE=real CSI=1`): its driver, StorageClass and
    /// VolumeSnapshotClass are in [`Environment::csi`]. Never skips: an environment without
    /// it is an error that says how to start one.
    pub fn shared_with_csi() -> Result<&'static TestEnv, String> {
        let env = Self::shared_with_real_node()?;
        match env.env.csi {
            Some(_) => Ok(env),
            None => Err(format!(
                "environment {} has no CSI driver: start it with `make testenv-up NAME={} NODE=real CSI=1`",
                env.env.name, env.env.name
            )),
        }
    }

    /// A new client (one per test: clients are bound to the runtime that made them).
    pub async fn client(&self) -> Result<Client, TestenvError> {
        self.env.client().await
    }

    /// A new namespace `<prefix>-<random>`, deleted when the returned guard drops.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, TestenvError> {
        let name = format!("{prefix}-{}", random_suffix());
        let namespaces: Api<Namespace> = Api::all(self.client().await?);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"arca.dev/test": "true"}}
        }))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        Ok(TestNamespace {
            name,
            env: self.env.clone(),
        })
    }

    /// A fresh prefix (`tests/<random>`) in the test bucket, emptied when the guard drops.
    pub fn prefix(&self) -> TestPrefix {
        TestPrefix {
            prefix: format!("tests/{}", random_suffix()),
            env: self.env.clone(),
        }
    }
}

fn start_or_load(real_node: bool) -> Result<TestEnv, String> {
    if let Ok(name) = std::env::var("ARCA_TESTENV") {
        return Environment::load(&name)
            .map(|env| TestEnv { env })
            .map_err(|e| format!("ARCA_TESTENV={name}: {e}"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let name = format!("auto-{}-{}", std::process::id(), random_suffix());
    eprintln!(
        "arca-testenv: starting environment {name} (set ARCA_TESTENV to reuse one started by `make testenv-up`)"
    );
    let options = UpOptions {
        real_node,
        csi: real_node,
    };
    let env = runtime
        .block_on(Environment::up_with(&crate::testenv_root(), &name, options))
        .map_err(|e| format!("the test environment could not start: {e}"))?;
    spawn_watchdog(&env).map_err(|e| format!("starting the teardown watchdog: {e}"))?;
    Ok(TestEnv { env })
}

/// A process that waits for this one to exit, then runs `hack/testenv/down.sh` on the
/// environment: teardown even when the test process panics or is killed.
fn spawn_watchdog(env: &Environment) -> std::io::Result<()> {
    let script = crate::workspace_root().join("hack/testenv/down.sh");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done; exec bash "$1" "$2""#)
        .arg(std::process::id().to_string())
        .arg(script)
        .arg(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().map(|_| ())
}

fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Runs an async cleanup to completion on a runtime of its own: usable from `Drop`, even
/// inside a test's runtime.
fn cleanup<F, Fut>(what: String, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), TestenvError>>,
{
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(f()).map_err(|e| e.to_string())
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("arca-testenv: cleaning up {what}: {e}"),
        Err(_) => eprintln!("arca-testenv: cleaning up {what} panicked"),
    }
}

/// A namespace of one test. Deleted (without waiting) on drop.
#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
    env: Environment,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("ARCA_TESTENV_KEEP").is_some() {
            return;
        }
        let (env, name) = (self.env.clone(), self.name.clone());
        cleanup(format!("namespace {name}"), move || async move {
            let namespaces: Api<Namespace> = Api::all(env.client().await?);
            match namespaces.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        });
    }
}

/// A prefix in the test bucket for one test. Every object under it is deleted on drop.
#[derive(Debug)]
pub struct TestPrefix {
    pub prefix: String,
    env: Environment,
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        if std::env::var_os("ARCA_TESTENV_KEEP").is_some() {
            return;
        }
        let (env, prefix) = (self.env.clone(), self.prefix.clone());
        cleanup(format!("prefix {prefix}"), move || async move {
            let s3 = env.s3_client();
            let bucket = env.s3.bucket.clone();
            let mut pages = s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(format!("{prefix}/"))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| TestenvError::S3(e.to_string()))?;
                for object in page.contents() {
                    if let Some(key) = object.key() {
                        s3.delete_object()
                            .bucket(&bucket)
                            .key(key)
                            .send()
                            .await
                            .map_err(|e| TestenvError::S3(e.to_string()))?;
                    }
                }
            }
            Ok(())
        });
    }
}
