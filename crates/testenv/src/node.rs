//! The real node (`NODE=real`): a kubelet over containerd and runc, beside the kwok nodes.
//!
//! The node lives in a network namespace of its own (kubelet refuses a loopback node IP),
//! joined to the machine by a veth pair: the machine's end holds the slot's host address,
//! through which the node reaches the API server; the node's end holds the node IP. The
//! namespace has no route out (`unreachable default`): pods reach the API server (through
//! kube-proxy and the `kubernetes` Service), the S3 server (which runs inside the namespace)
//! and nothing else. Addresses come from 198.18.0.0/15, the range set aside for network tests
//! (RFC 2544): one slot per running node, reserved under /run so parallel starts never share.
//!
//! `hack/testenv/node.sh` starts the processes inside the namespace; `hack/testenv/down.sh`
//! stops them by pid and cgroup, removes the namespace and frees the slot.

use std::{
    fmt::Write as _,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

use crate::{TestenvError, error::io};

/// The real node's name in every environment (each environment is its own cluster).
pub const REAL_NODE_NAME: &str = "real-node";
/// The taint the real node registers with, so that pods land on it only when they ask
/// (a toleration and a node selector): the kwok-node tests run unchanged beside it.
pub const REAL_NODE_TAINT_KEY: &str = "arca.dev/real-node";
/// The label the real node carries.
pub const REAL_NODE_LABEL: &str = "arca.dev/real-node";
/// The port the S3 server listens on inside the node's network namespace.
pub const S3_PORT_IN_NODE: u16 = 9000;
/// The slots that can be reserved at once (addresses 198.18.<slot>.0/30, pods 198.19.<slot>.0/24).
const SLOTS: u8 = 100;
/// The Service range of every environment; the `kubernetes` Service is its first address.
pub(crate) const SERVICE_CIDR: &str = "198.19.255.0/24";
pub(crate) const KUBERNETES_SERVICE_IP: &str = "198.19.255.1";

/// What one real node uses: its slot and the names and addresses derived from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSlot {
    pub slot: u8,
}

impl NodeSlot {
    pub fn netns(&self) -> String {
        format!("arca-node-{}", self.slot)
    }
    /// The machine's end of the veth pair (interface names are at most 15 bytes).
    pub fn host_interface(&self) -> String {
        format!("arcah{}", self.slot)
    }
    pub fn node_interface(&self) -> String {
        format!("arcan{}", self.slot)
    }
    /// The machine's address on the link: the node reaches the API server here.
    pub fn host_ip(&self) -> String {
        format!("198.18.{}.1", self.slot)
    }
    /// The node IP (kubelet's `--node-ip`), inside the namespace.
    pub fn node_ip(&self) -> String {
        format!("198.18.{}.2", self.slot)
    }
    pub fn pod_cidr(&self) -> String {
        format!("198.19.{}.0/24", self.slot)
    }
    /// The cgroup (in every hierarchy) that holds the node's pods: `/<this>/kubepods/...`.
    pub fn cgroup_root(&self) -> String {
        format!("arca-node-{}", self.slot)
    }
    /// The URL of the S3 server, the same from the machine and from pods.
    pub fn s3_endpoint(&self) -> String {
        format!("http://{}:{S3_PORT_IN_NODE}", self.node_ip())
    }
    /// The slot's folder (its reservation, under /run). The node's unix sockets live under it,
    /// never under the environment's folder: a socket's path ends at 108 bytes, and a checkout
    /// deep enough (a CI clone's) would push them past it.
    pub fn dir(&self) -> PathBuf {
        slots_dir().join(self.slot.to_string())
    }
    /// kubelet's `--root-dir`: an empty folder of the slot on the machine, on which `node.sh`
    /// bind-mounts the environment's `node/kubelet` inside the node's mount namespace. Short,
    /// because kubelet's plugin registration sockets must be under it.
    pub fn kubelet_root_dir(&self) -> PathBuf {
        self.dir().join("kubelet")
    }
    /// containerd's socket (its ttrpc socket is beside it, `.ttrpc` added).
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }
}

/// Refuses a unix socket path the kernel would refuse (108 bytes with the final NUL), with
/// the setting that shortens it.
fn check_socket_path(path: &Path) -> Result<(), TestenvError> {
    if path.as_os_str().len() <= 100 {
        return Ok(());
    }
    Err(TestenvError::BadFile {
        path: path.to_path_buf(),
        message: "the path is too long for a unix socket (108 bytes): use a shorter \
                  ARCA_TESTENV_SLOTS (default /run/arca-testenv/slots)"
            .into(),
    })
}

/// The folder of reservations: one sub-folder per slot in use, made atomically by `mkdir`.
fn slots_dir() -> PathBuf {
    std::env::var_os("ARCA_TESTENV_SLOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/arca-testenv/slots"))
}

/// Everything the node needs that is not built here, with how to get it.
pub(crate) fn check_prerequisites(bin: &Path) -> Result<(), TestenvError> {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if euid != 0 {
        return Err(TestenvError::Missing {
            program: "root".into(),
            hint: "the real node (NODE=real) creates a network namespace, mounts and cgroups: \
                   run as root, or start the environment without NODE=real"
                .into(),
        });
    }
    let debian =
        "apt-get install containerd runc containernetworking-plugins iptables busybox-static";
    for program in [
        "ip",
        "unshare",
        "nsenter",
        "containerd",
        "ctr",
        "runc",
        "iptables",
    ] {
        if crate::binaries::which(program).is_none() {
            return Err(TestenvError::Missing {
                program: program.into(),
                hint: format!("the real node needs it: {debian}"),
            });
        }
    }
    for path in [
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/loopback",
    ] {
        if !Path::new(path).exists() {
            return Err(TestenvError::Missing {
                program: path.into(),
                hint: format!("the pods' network plugins: {debian}"),
            });
        }
    }
    for program in ["kubelet", "kube-proxy"] {
        if !bin.join(program).is_file() {
            return Err(TestenvError::Missing {
                program: bin.join(program).display().to_string(),
                hint: "run hack/testenv/build.sh (it builds kubelet and kube-proxy too)".into(),
            });
        }
    }
    Ok(())
}

/// Reserves a free slot for the environment in `dir`. A reservation whose environment
/// folder is gone (a killed run) is taken over.
pub(crate) fn reserve_slot(dir: &Path) -> Result<NodeSlot, TestenvError> {
    reserve_in(&slots_dir(), dir)
}

fn reserve_in(slots: &Path, dir: &Path) -> Result<NodeSlot, TestenvError> {
    std::fs::create_dir_all(slots).map_err(io(slots))?;
    for slot in 0..SLOTS {
        let path = slots.join(slot.to_string());
        let owner_file = path.join("owner");
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&owner_file).unwrap_or_default();
                let stale = !owner.is_empty() && !Path::new(owner.trim()).exists();
                if !stale {
                    continue;
                }
                // The owner's folder is gone: its node was torn down without `down`. What
                // it left of its network, `create_network` removes before making its own.
                let node = NodeSlot { slot };
                std::fs::write(&owner_file, dir.display().to_string()).map_err(io(&owner_file))?;
                return Ok(node);
            }
            Err(e) => return Err(io(&path)(e)),
        }
        std::fs::write(&owner_file, dir.display().to_string()).map_err(io(&owner_file))?;
        return Ok(NodeSlot { slot });
    }
    Err(TestenvError::Missing {
        program: format!("a free node slot in {}", slots.display()),
        hint: format!(
            "{SLOTS} real nodes are up: stop some with `make testenv-down NAME=…`, or remove \
             reservations of environments that no longer run"
        ),
    })
}

fn run(program: &str, args: &[&str]) -> Result<(), TestenvError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io(program))?;
    if out.status.success() {
        return Ok(());
    }
    Err(TestenvError::Command {
        command: format!("{program} {}", args.join(" ")),
        code: out.status.code(),
        output: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The namespace, the veth pair, the addresses, and no way out.
pub(crate) fn create_network(node: &NodeSlot) -> Result<(), TestenvError> {
    let (ns, host_if, node_if) = (node.netns(), node.host_interface(), node.node_interface());
    remove_network(node);
    run("ip", &["netns", "add", &ns])?;
    run(
        "ip",
        &[
            "link", "add", &host_if, "type", "veth", "peer", "name", &node_if, "netns", &ns,
        ],
    )?;
    run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/30", node.host_ip()),
            "dev",
            &host_if,
        ],
    )?;
    run("ip", &["link", "set", &host_if, "up"])?;
    let in_ns = |args: &[&str]| {
        let mut all = vec!["netns", "exec", ns.as_str(), "ip"];
        all.extend_from_slice(args);
        run("ip", &all)
    };
    in_ns(&["link", "set", "lo", "up"])?;
    in_ns(&[
        "addr",
        "add",
        &format!("{}/30", node.node_ip()),
        "dev",
        &node_if,
    ])?;
    in_ns(&["link", "set", &node_if, "up"])?;
    // Nothing leaves the machine: no default route, and a fast "unreachable" instead.
    in_ns(&["route", "add", "unreachable", "default"])
}

/// Removes the namespace and the machine's end of the link (best effort, for a retry).
pub(crate) fn remove_network(node: &NodeSlot) {
    let _ = run("ip", &["link", "del", &node.host_interface()]);
    let _ = run("ip", &["netns", "del", &node.netns()]);
}

/// The node's files, under `<dir>/node`: the settings node.sh reads, and each component's
/// configuration. `pki` is kwokctl's folder (ca.crt, admin.crt, admin.key).
pub(crate) fn write_config(
    dir: &Path,
    bin: &Path,
    node: &NodeSlot,
    pki: &Path,
    api_port: u16,
    images: &Path,
    csi: bool,
) -> Result<PathBuf, TestenvError> {
    let nd = dir.join("node");
    for sub in [
        "sysctl", "certs", "cni", "cni-ipam", "pod-logs", "kubelet", "images",
    ] {
        std::fs::create_dir_all(nd.join(sub)).map_err(io(nd.join(sub)))?;
    }
    let socket = node.containerd_socket();
    check_socket_path(&socket)?;
    for image in ["pause.tar", "busybox.tar"] {
        let (from, to) = (images.join(image), nd.join("images").join(image));
        std::fs::copy(&from, &to).map_err(io(&from))?;
    }
    // The mount point of kubelet's root; its files stay in `node/kubelet` (node.sh binds it).
    let kubelet_root = node.kubelet_root_dir();
    std::fs::create_dir_all(&kubelet_root).map_err(io(&kubelet_root))?;
    let write = |name: &str, text: String| {
        let path = nd.join(name);
        std::fs::write(&path, text).map_err(io(&path))
    };
    let versions = crate::binaries::versions();
    let mut env = String::new();
    let _ = writeln!(env, "BIN={}", bin.display());
    let _ = writeln!(env, "NODE_NAME={REAL_NODE_NAME}");
    let _ = writeln!(env, "NODE_IP={}", node.node_ip());
    let _ = writeln!(env, "NODE_LABELS={REAL_NODE_LABEL}=true");
    let _ = writeln!(env, "NETNS={}", node.netns());
    let _ = writeln!(env, "HOST_INTERFACE={}", node.host_interface());
    let _ = writeln!(env, "CGROUP_ROOT={}", node.cgroup_root());
    let _ = writeln!(env, "SLOT_DIR={}", node.dir().display());
    let _ = writeln!(env, "CONTAINERD_SOCKET={}", socket.display());
    let _ = writeln!(env, "KUBELET_ROOT_DIR={}", kubelet_root.display());
    let _ = writeln!(env, "KUBELET_DATA_DIR={}", nd.join("kubelet").display());
    if csi {
        env.push_str(&csi_settings(dir, &kubelet_root)?);
    }
    write("node.env", env)?;

    write(
        "containerd.toml",
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Root on these machines lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"#,
            root = nd.join("containerd/root").display(),
            state = nd.join("containerd/state").display(),
            socket = socket.display(),
            pause = versions.pause_image,
            cni = nd.join("cni").display(),
        ),
    )?;
    write(
        "cni/10-arca.conflist",
        serde_json::to_string_pretty(&serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "arca",
            "plugins": [
                {
                    "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": node.pod_cidr()}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": nd.join("cni-ipam")
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        }))?,
    )?;
    // Pods get no DNS server (none runs here): a query fails at once instead of leaving.
    write(
        "resolv.conf",
        "nameserver 127.0.0.1\noptions ndots:1\n".into(),
    )?;
    write(
        "kubelet.yaml",
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
podLogsDir: {pod_logs}
resolvConf: {resolv}
clusterDomain: cluster.local
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
registerWithTaints:
- {{key: {taint}, value: "true", effect: NoSchedule}}
evictionHard: {{memory.available: 50Mi, nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
"#,
            node_ip = node.node_ip(),
            cgroup_root = node.cgroup_root(),
            socket = socket.display(),
            pod_logs = nd.join("pod-logs").display(),
            resolv = nd.join("resolv.conf").display(),
            ca = pki.join("ca.crt").display(),
            taint = REAL_NODE_TAINT_KEY,
        ),
    )?;
    write(
        "kube-proxy.yaml",
        format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
clusterCIDR: {pod_cidr}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
            kubeconfig = nd.join("kubeconfig").display(),
            pod_cidr = node.pod_cidr(),
        ),
    )?;
    // The node's credentials: the cluster's CA and admin certificate (kwokctl makes no
    // others), with the API server reached at the machine's end of the link.
    write(
        "kubeconfig",
        format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: arca
  cluster:
    certificate-authority: {ca}
    server: https://{host_ip}:{api_port}
users:
- name: node
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: node
  context: {{cluster: arca, user: node}}
current-context: node
"#,
            ca = pki.join("ca.crt").display(),
            cert = pki.join("admin.crt").display(),
            key = pki.join("admin.key").display(),
            host_ip = node.host_ip(),
        ),
    )?;
    Ok(kubelet_root)
}

/// The CSI driver's state (volumes and snapshots) in the environment `dir`.
pub(crate) fn csi_state_dir(dir: &Path) -> PathBuf {
    dir.join("node/csi")
}

/// node.env's settings of the CSI stack (`CSI=1`; node.sh starts it). The driver's socket is
/// where kubelet looks for drivers' sockets, its registration socket in kubelet's
/// `plugins_registry`, which kubelet watches.
fn csi_settings(dir: &Path, kubelet_root: &Path) -> Result<String, TestenvError> {
    let driver = crate::csi::CSI_DRIVER;
    let socket = kubelet_root.join("plugins").join(driver).join("csi.sock");
    let registration_dir = kubelet_root.join("plugins_registry");
    let registration = registration_dir.join(format!("{driver}-reg.sock"));
    check_socket_path(&socket)?;
    check_socket_path(&registration)?;
    let mut env = String::new();
    let _ = writeln!(env, "CSI=1");
    let _ = writeln!(env, "CSI_SOCKET={}", socket.display());
    let _ = writeln!(env, "CSI_REGISTRATION_DIR={}", registration_dir.display());
    let _ = writeln!(env, "CSI_STATE_DIR={}", csi_state_dir(dir).display());
    Ok(env)
}

/// Starts `hack/testenv/node.sh` detached, its pid in `pids/node.pid`: in a mount namespace
/// of its own whose mounts never reach the machine (`unshare --propagation slave`), inside the
/// node's network namespace (`nsenter --net`; not `ip netns exec`, which remounts /sys
/// without the cgroup folders kubelet needs).
pub(crate) fn start(dir: &Path, node: &NodeSlot) -> Result<(), TestenvError> {
    let script = crate::workspace_root().join("hack/testenv/node.sh");
    let log_path = dir.join("logs/node.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let log_err = log.try_clone().map_err(io(&log_path))?;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "slave", "nsenter"])
        .arg(format!("--net=/run/netns/{}", node.netns()))
        .arg("bash")
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(io("unshare"))?;
    let pid_path = dir.join("pids/node.pid");
    std::fs::write(&pid_path, child.id().to_string()).map_err(io(&pid_path))
}

/// Waits until the real node is Ready; on a timeout the error quotes the last line of the
/// component logs that says what went wrong.
pub(crate) async fn wait_ready(client: &Client, dir: &Path) -> Result<(), TestenvError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = || async {
        let node = nodes.get(REAL_NODE_NAME).await.ok()?;
        node.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    };
    let log = dir.join("logs");
    match crate::cluster::wait_for("the real node (kubelet) to be Ready", 180, &log, ready).await {
        Ok(()) => Ok(()),
        Err(TestenvError::Timeout { what, seconds, .. }) => Err(TestenvError::ComponentFailed {
            what: format!("{what} within {seconds}s"),
            evidence: crate::cluster::last_errors(
                &[
                    "node.log",
                    "containerd.log",
                    "kubelet.log",
                    "kube-proxy.log",
                ]
                .map(|f| log.join(f)),
            ),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_once_and_freed_when_their_environment_is_gone() -> std::io::Result<()> {
        let root = std::env::temp_dir().join(format!("arca-slots-{}", rand::random::<u32>()));
        let slots = root.join("slots");
        let a = root.join("env-a");
        let b = root.join("env-b");
        std::fs::create_dir_all(&a)?;
        std::fs::create_dir_all(&b)?;
        let first = reserve_in(&slots, &a).map_err(std::io::Error::other)?;
        let second = reserve_in(&slots, &b).map_err(std::io::Error::other)?;
        assert_ne!(first, second, "two live environments never share a slot");
        std::fs::remove_dir_all(&a)?;
        let third = reserve_in(&slots, &root.join("env-c")).map_err(std::io::Error::other)?;
        assert_eq!(
            third, first,
            "a slot whose environment is gone is taken over"
        );
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }

    #[test]
    fn the_csi_sockets_are_where_kubelet_looks_and_too_long_paths_are_refused() {
        let dir = Path::new("/t/env");
        let settings = csi_settings(dir, Path::new("/run/s/7/kubelet")).unwrap_or_default();
        assert!(settings.contains("CSI=1\n"), "{settings}");
        assert!(
            settings
                .contains("CSI_SOCKET=/run/s/7/kubelet/plugins/hostpath.csi.arca.dev/csi.sock\n"),
            "{settings}"
        );
        assert!(
            settings.contains("CSI_REGISTRATION_DIR=/run/s/7/kubelet/plugins_registry\n"),
            "{settings}"
        );
        assert!(
            settings.contains("CSI_STATE_DIR=/t/env/node/csi\n"),
            "{settings}"
        );
        let long = PathBuf::from(format!("/{}", "x".repeat(80)));
        let refused = csi_settings(dir, &long.join("kubelet"));
        assert!(
            matches!(&refused, Err(TestenvError::BadFile { message, .. }) if message.contains("unix socket")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_node_sockets_fit_however_deep_the_checkout_is() {
        // Paths under the environment's folder (in the checkout) never hold a socket: a CI
        // clone deep enough made the registration socket too long once.
        let node = NodeSlot { slot: SLOTS - 1 };
        let registration = node
            .kubelet_root_dir()
            .join("plugins_registry")
            .join(format!("{}-reg.sock", crate::csi::CSI_DRIVER));
        for socket in [
            node.containerd_socket(),
            registration,
            node.kubelet_root_dir()
                .join("plugins")
                .join(crate::csi::CSI_DRIVER)
                .join("csi.sock"),
        ] {
            assert!(check_socket_path(&socket).is_ok(), "{}", socket.display());
        }
        assert!(check_socket_path(&Path::new("/").join("x".repeat(101))).is_err());
    }

    #[test]
    fn names_and_addresses_fit_the_kernel_and_stay_in_the_test_range() {
        let node = NodeSlot { slot: SLOTS - 1 };
        assert!(node.host_interface().len() <= 15 && node.node_interface().len() <= 15);
        for address in [node.host_ip(), node.node_ip(), node.pod_cidr()] {
            assert!(
                address.starts_with("198.18.") || address.starts_with("198.19."),
                "{address}"
            );
        }
        assert!(!SERVICE_CIDR.starts_with(&format!("198.19.{}.", node.slot)));
    }
}
