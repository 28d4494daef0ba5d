//! One environment: a cluster and an S3 server, described by files in its folder.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use kube::{Client, Config, config::KubeConfigOptions, config::Kubeconfig};

use crate::{Csi, TestenvError, binaries, cluster, csi, error::io, node, s3};

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

/// What an environment has beside its control plane, S3 server and kwok node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// A node run by a real kubelet (`NODE=real`, `--node real`).
    pub real_node: bool,
    /// The CSI stack on the real node (`CSI=1`, `--csi`); needs `real_node`.
    pub csi: bool,
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
    /// The CSI driver, its StorageClass and VolumeSnapshotClass on the real node, when
    /// started with them (`CSI=1`).
    pub csi: Option<Csi>,
}

impl Environment {
    /// Starts a new environment named `name` in `<root>/<name>` (kwok nodes only).
    pub async fn up(name: &str) -> Result<Self, TestenvError> {
        Self::up_in(&crate::testenv_root(), name, false).await
    }

    /// Starts a new environment in `<root>/<name>`, with a real kubelet node beside the kwok
    /// node when `real_node`. On failure, whatever was started is stopped again.
    pub async fn up_in(root: &Path, name: &str, real_node: bool) -> Result<Self, TestenvError> {
        let options = UpOptions {
            real_node,
            csi: false,
        };
        Self::up_with(root, name, options).await
    }

    /// Starts a new environment in `<root>/<name>` with what `options` asks for. On failure,
    /// whatever was started is stopped again.
    pub async fn up_with(
        root: &Path,
        name: &str,
        options: UpOptions,
    ) -> Result<Self, TestenvError> {
        if options.csi && !options.real_node {
            return Err(TestenvError::Missing {
                program: "a real node".into(),
                hint: "the CSI driver runs beside the real node's kubelet: start the \
                       environment with `--node real` (NODE=real) too"
                    .into(),
            });
        }
        let dir = root.join(name);
        if dir.join("kubeconfig").exists() {
            return Err(TestenvError::AlreadyUp {
                name: name.into(),
                dir,
            });
        }
        let bin = binaries::ensure_built()?;
        let images = match options.real_node {
            true => {
                node::check_prerequisites(&bin)?;
                if options.csi {
                    csi::check_built(&bin)?;
                }
                Some(binaries::ensure_images()?)
            }
            false => None,
        };
        for sub in ["logs", "pids", "exec"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(dir.join(sub)))?;
        }
        match Self::start(name, &dir, &bin, images.as_deref(), options.csi).await {
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
        with_csi: bool,
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
            csi: None,
        };
        let client = env.client().await?;
        cluster::add_ready_node(&client, &cluster::log_dir(dir, name)).await?;
        if let (Some(slot), Some(images)) = (&slot, images) {
            let pki = cluster::pki_dir(dir, name);
            let api_port = cluster::api_port(&env.kubeconfig)?;
            let kubelet_root_dir =
                node::write_config(dir, bin, slot, &pki, api_port, images, with_csi)?;
            if with_csi {
                // Before node.sh starts the stack: its controllers need the CRDs at start.
                let log = cluster::log_dir(dir, name).join("kube-apiserver.log");
                csi::install(&client, env.kubectl(), bin, &log).await?;
            }
            node::start(dir, slot)?;
            node::wait_ready(&client, dir).await?;
            if with_csi {
                csi::wait_ready(&client, dir).await?;
                csi::all_running(dir)?;
                env.csi = Some(Csi::new(node::csi_state_dir(dir)));
            }
            env.real_node = Some(RealNode {
                name: node::REAL_NODE_NAME.into(),
                kubelet_root_dir,
                test_image: binaries::versions().busybox_image,
                s3_endpoint_in_cluster: slot.s3_endpoint(),
                containerd_socket: slot.containerd_socket(),
                netns: slot.netns(),
            });
        }
        s3::create_bucket(&env.s3, &dir.join("logs/versitygw.log")).await?;
        env.write_files()?;
        Ok(env)
    }

    /// The environment `name` that `up` started earlier (in this or another process).
    pub fn load(name: &str) -> Result<Self, TestenvError> {
        Self::load_dir(name, crate::testenv_root().join(name))
    }

    fn load_dir(name: &str, dir: PathBuf) -> Result<Self, TestenvError> {
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
            csi: match more.get("CSI_DRIVER") {
                Some(driver) => Some(Csi {
                    driver: driver.clone(),
                    storage_class: get(&more, "CSI_STORAGE_CLASS", &more_path)?,
                    snapshot_class: get(&more, "CSI_SNAPSHOT_CLASS", &more_path)?,
                    state_dir: get(&more, "CSI_STATE_DIR", &more_path)?.into(),
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
        if let Some(csi) = &self.csi {
            more.push_str(&format!(
                "CSI_DRIVER={}\nCSI_STORAGE_CLASS={}\nCSI_SNAPSHOT_CLASS={}\nCSI_STATE_DIR={}\n",
                csi.driver,
                csi.storage_class,
                csi.snapshot_class,
                csi.state_dir.display()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn csi_without_a_real_node_is_refused_before_anything_starts() {
        let root = std::env::temp_dir().join(format!("arca-up-{}", rand::random::<u32>()));
        let options = UpOptions {
            real_node: false,
            csi: true,
        };
        let refused = Environment::up_with(&root, "x", options).await;
        assert!(
            matches!(&refused, Err(TestenvError::Missing { hint, .. }) if hint.contains("--node real")),
            "{refused:?}"
        );
        assert!(!root.exists(), "nothing is made");
    }

    #[test]
    fn the_csi_stack_is_written_to_the_environment_s_files_and_read_back()
    -> Result<(), TestenvError> {
        let dir = std::env::temp_dir().join(format!("arca-env-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let env = Environment {
            name: "x".into(),
            dir: dir.clone(),
            kubeconfig: dir.join("kubeconfig"),
            s3: S3Settings {
                endpoint: "http://127.0.0.1:1".into(),
                access_key_id: "a".into(),
                secret_access_key: "s".into(),
                region: "r".into(),
                bucket: "b".into(),
            },
            bin: "/bin".into(),
            exec_dir: dir.join("exec"),
            real_node: None,
            csi: Some(Csi::new(dir.join("node/csi"))),
        };
        env.write_files()?;
        std::fs::write(&env.kubeconfig, "").map_err(io(&env.kubeconfig))?;
        let more = read_env_file(&dir.join("testenv.env"))?;
        let loaded = Environment::load_dir("x", dir.clone());
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        assert_eq!(
            more.get("CSI_DRIVER").map(String::as_str),
            Some(crate::CSI_DRIVER)
        );
        assert_eq!(
            more.get("CSI_STORAGE_CLASS").map(String::as_str),
            Some(crate::CSI_STORAGE_CLASS)
        );
        assert_eq!(
            more.get("CSI_SNAPSHOT_CLASS").map(String::as_str),
            Some(crate::CSI_SNAPSHOT_CLASS)
        );
        assert_eq!(loaded?.csi, env.csi);
        // Without the stack, an environment says so: tests that need it fail, never skip.
        let without = Environment { csi: None, ..env };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        without.write_files()?;
        std::fs::write(&without.kubeconfig, "").map_err(io(&without.kubeconfig))?;
        let loaded = Environment::load_dir("x", dir.clone());
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        assert_eq!(loaded?.csi, None);
        Ok(())
    }
}
