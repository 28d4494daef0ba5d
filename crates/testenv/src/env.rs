//! One environment: a cluster and an S3 server, described by files in its folder.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};

use crate::{TestenvError, binaries, cluster, error::io, node, s3};

/// How to reach the environment's S3 server; written to `s3.env`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub bucket: String,
}

/// The real node of an environment started with `NODE=real`; written to `testenv.env`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealNode {
    /// Its name (`REAL_NODE`).
    pub name: String,
    /// kubelet's `--root-dir` (`KUBELET_ROOT_DIR`): pods' volumes are under `<it>/pods`.
    pub kubelet_root_dir: PathBuf,
    /// The busybox image imported into its containerd (`TEST_IMAGE`).
    pub test_image: String,
    /// The S3 URL pods use (`AWS_ENDPOINT_URL_IN_CLUSTER` in s3.env).
    pub s3_endpoint_in_cluster: String,
    /// Its containerd's socket (`CONTAINERD_SOCKET`), for `make testenv-load`.
    pub containerd_socket: PathBuf,
    /// Its network namespace (`NODE_NETNS`).
    pub netns: String,
}

/// A running environment.
#[derive(Clone, Debug)]
pub struct Environment {
    /// Its name (`make testenv-up NAME=…`).
    pub name: String,
    /// Its folder: `target/testenv/<name>`.
    pub dir: PathBuf,
    /// Admin kubeconfig (client certificate, `system:masters`).
    pub kubeconfig: PathBuf,
    /// The S3 server and its bucket.
    pub s3: S3Settings,
    /// Where the components' binaries (kubectl included) are.
    pub bin: PathBuf,
    /// The folder in which kwok runs `pods/exec` commands, on this host.
    pub exec_dir: PathBuf,
    /// The kubelet node, when started with one (`NODE=real`).
    pub real_node: Option<RealNode>,
}

impl Environment {
    /// Starts a new environment named `name` in `<root>/<name>` (kwok nodes only).
    pub async fn up(name: &str) -> Result<Self, TestenvError> {
        Self::up_in(&crate::testenv_root(), name, false).await
    }

    /// Starts a new environment in `<root>/<name>`, with a real kubelet node beside the kwok
    /// node when `real_node`. On failure, whatever was started is stopped again.
    pub async fn up_in(root: &Path, name: &str, real_node: bool) -> Result<Self, TestenvError> {
        let dir = root.join(name);
        if dir.join("kubeconfig").exists() {
            return Err(TestenvError::AlreadyUp {
                name: name.into(),
                dir,
            });
        }
        let bin = binaries::ensure_built()?;
        let images = match real_node {
            true => {
                node::check_prerequisites(&bin)?;
                Some(binaries::ensure_images()?)
            }
            false => None,
        };
        for sub in ["logs", "pids", "exec"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(dir.join(sub)))?;
        }
        match Self::start(name, &dir, &bin, images.as_deref()).await {
            Ok(env) => Ok(env),
            Err(err) => {
                if std::env::var_os("ARCA_TESTENV_KEEP").is_none() {
                    let _ = down_dir(&dir);
                }
                Err(err)
            }
        }
    }

    async fn start(
        name: &str,
        dir: &Path,
        bin: &Path,
        images: Option<&Path>,
    ) -> Result<Self, TestenvError> {
        let exec_dir = dir.join("exec");
        let slot = match images {
            Some(_) => {
                let slot = node::reserve_slot(dir)?;
                // Recorded at once, so `down` frees the slot even if the start fails.
                let path = dir.join("node-slot");
                std::fs::write(&path, slot.slot.to_string()).map_err(io(&path))?;
                node::create_network(&slot)?;
                Some(slot)
            }
            None => None,
        };
        let s3 = {
            let _ports = cluster::PortLock::acquire()?;
            let s3 = s3::start(dir, bin, slot.as_ref())?;
            cluster::create(name, dir, bin, &exec_dir, slot.as_ref())?;
            s3
        };
        let mut env = Self {
            name: name.into(),
            dir: dir.to_path_buf(),
            kubeconfig: dir.join("kubeconfig"),
            s3,
            bin: bin.to_path_buf(),
            exec_dir,
            real_node: None,
        };
        let client = env.client().await?;
        cluster::add_ready_node(&client, &cluster::log_dir(dir, name)).await?;
        if let (Some(slot), Some(images)) = (&slot, images) {
            let pki = cluster::pki_dir(dir, name);
            let api_port = cluster::api_port(&env.kubeconfig)?;
            let kubelet_root_dir = node::write_config(dir, bin, slot, &pki, api_port, images)?;
            node::start(dir, slot)?;
            node::wait_ready(&client, dir).await?;
            env.real_node = Some(RealNode {
                name: node::REAL_NODE_NAME.into(),
                kubelet_root_dir,
                test_image: binaries::versions().busybox_image,
                s3_endpoint_in_cluster: slot.s3_endpoint(),
                containerd_socket: dir.join("node/containerd.sock"),
                netns: slot.netns(),
            });
        }
        s3::create_bucket(&env.s3, &dir.join("logs/versitygw.log")).await?;
        env.write_files()?;
        Ok(env)
    }

    /// The environment `name` that `up` started earlier (in this or another process).
    pub fn load(name: &str) -> Result<Self, TestenvError> {
        let dir = crate::testenv_root().join(name);
        let kubeconfig = dir.join("kubeconfig");
        let s3_env = dir.join("s3.env");
        if !kubeconfig.exists() || !s3_env.exists() {
            return Err(TestenvError::NotUp {
                name: name.into(),
                dir,
            });
        }
        let s3 = read_env_file(&s3_env)?;
        let more = read_env_file(&dir.join("testenv.env"))?;
        let get = |map: &BTreeMap<String, String>, key: &str, path: &Path| {
            map.get(key).cloned().ok_or_else(|| TestenvError::BadFile {
                path: path.to_path_buf(),
                message: format!("{key} is missing"),
            })
        };
        let s3_path = dir.join("s3.env");
        let more_path = dir.join("testenv.env");
        Ok(Self {
            name: name.into(),
            s3: S3Settings {
                endpoint: get(&s3, "AWS_ENDPOINT_URL", &s3_path)?,
                access_key_id: get(&s3, "AWS_ACCESS_KEY_ID", &s3_path)?,
                secret_access_key: get(&s3, "AWS_SECRET_ACCESS_KEY", &s3_path)?,
                region: get(&s3, "AWS_REGION", &s3_path)?,
                bucket: get(&s3, "ARCA_TEST_BUCKET", &s3_path)?,
            },
            bin: get(&more, "ARCA_TESTENV_BIN", &more_path)?.into(),
            exec_dir: get(&more, "ARCA_TESTENV_EXEC_DIR", &more_path)?.into(),
            real_node: match more.get("REAL_NODE") {
                Some(name) => Some(RealNode {
                    name: name.clone(),
                    kubelet_root_dir: get(&more, "KUBELET_ROOT_DIR", &more_path)?.into(),
                    test_image: get(&more, "TEST_IMAGE", &more_path)?,
                    s3_endpoint_in_cluster: get(&s3, "AWS_ENDPOINT_URL_IN_CLUSTER", &s3_path)?,
                    containerd_socket: get(&more, "CONTAINERD_SOCKET", &more_path)?.into(),
                    netns: get(&more, "NODE_NETNS", &more_path)?,
                }),
                None => None,
            },
            kubeconfig,
            dir,
        })
    }

    /// Stops the environment `name` and removes its folder.
    pub fn down(name: &str) -> Result<(), TestenvError> {
        down_dir(&crate::testenv_root().join(name))
    }

    /// A new client for the cluster, as its admin. Make one per test: a client is bound to
    /// the tokio runtime it was made on.
    pub async fn client(&self) -> Result<Client, TestenvError> {
        let bad = |message: String| TestenvError::Kubeconfig {
            path: self.kubeconfig.clone(),
            message,
        };
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).map_err(|e| bad(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| bad(e.to_string()))?;
        Ok(Client::try_from(config)?)
    }

    /// A new S3 client for the test server (custom endpoint, path-style addressing).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        s3::client(&self.s3)
    }

    /// `kubectl` of the same version as the cluster, pointed at it.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    fn write_files(&self) -> Result<(), TestenvError> {
        let mut s3 = format!(
            "AWS_ENDPOINT_URL={}\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION={}\nARCA_TEST_BUCKET={}\nARCA_TEST_LOCKED_BUCKET={}\n",
            self.s3.endpoint,
            self.s3.access_key_id,
            self.s3.secret_access_key,
            self.s3.region,
            self.s3.bucket,
            s3::LOCKED_BUCKET
        );
        let mut more = format!(
            "ARCA_TESTENV_BIN={}\nARCA_TESTENV_EXEC_DIR={}\n",
            self.bin.display(),
            self.exec_dir.display()
        );
        if let Some(node) = &self.real_node {
            s3.push_str(&format!(
                "AWS_ENDPOINT_URL_IN_CLUSTER={}\n",
                node.s3_endpoint_in_cluster
            ));
            more.push_str(&format!(
                "REAL_NODE={}\nKUBELET_ROOT_DIR={}\nTEST_IMAGE={}\nCONTAINERD_SOCKET={}\nNODE_NETNS={}\n",
                node.name,
                node.kubelet_root_dir.display(),
                node.test_image,
                node.containerd_socket.display(),
                node.netns
            ));
        }
        let more_path = self.dir.join("testenv.env");
        std::fs::write(&more_path, more).map_err(io(&more_path))?;
        // s3.env last: its presence marks the environment complete.
        let s3_path = self.dir.join("s3.env");
        std::fs::write(&s3_path, s3).map_err(io(&s3_path))
    }
}

fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, TestenvError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// `hack/testenv/down.sh DIR`: the one implementation of teardown, shared with the
/// watchdog that tears down environments of test processes that have exited.
pub(crate) fn down_dir(dir: &Path) -> Result<(), TestenvError> {
    let script = crate::workspace_root().join("hack/testenv/down.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .map_err(io(&script))?;
    if out.status.success() {
        return Ok(());
    }
    Err(TestenvError::Command {
        command: format!("{} {}", script.display(), dir.display()),
        code: out.status.code(),
        output: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
