//! `arca-testenv up|down|env --name NAME`: what `make testenv-up/-down` run.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Start or stop a local Kubernetes + S3 test environment")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build (once) and start an environment in target/testenv/NAME.
    Up {
        #[arg(long, default_value = "dev")]
        name: String,
        /// `real`: add a node run by a real kubelet (containerd, runc) beside the kwok node.
        /// Needs root and Debian's containerd, runc, containernetworking-plugins, iptables and
        /// busybox-static.
        #[arg(long, value_parser = ["kwok", "real"], default_value = "kwok")]
        node: String,
        /// Add a CSI stack to the real node (needs `--node real`): a hostpath driver, the
        /// StorageClass `csi-hostpath`, the snapshot CRDs, the VolumeSnapshotClass
        /// `csi-hostpath-snapclass`, external-provisioner and the snapshot controllers.
        #[arg(long)]
        csi: bool,
    },
    /// Stop exactly what `up` started and remove target/testenv/NAME.
    Down {
        #[arg(long, default_value = "dev")]
        name: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Up { name, node, csi } => {
            if csi && node != "real" {
                anyhow::bail!(
                    "--csi needs --node real (make testenv-up NODE=real CSI=1): the CSI driver runs beside the real node's kubelet"
                );
            }
            let started = std::time::Instant::now();
            let root = arca_testenv::testenv_root();
            let options = arca_testenv::UpOptions {
                real_node: node == "real",
                csi,
            };
            let env = arca_testenv::Environment::up_with(&root, &name, options).await?;
            println!(
                "environment {name} is up ({:.0}s)\n  kubeconfig: {}\n  s3:         {} (bucket {}), settings in {}\n  stop it:    make testenv-down NAME={name}",
                started.elapsed().as_secs_f64(),
                env.kubeconfig.display(),
                env.s3.endpoint,
                env.s3.bucket,
                env.dir.join("s3.env").display()
            );
            if let Some(node) = &env.real_node {
                println!(
                    "  real node:  {} (kubelet root {}), test image {}; pods reach S3 at {}",
                    node.name,
                    node.kubelet_root_dir.display(),
                    node.test_image,
                    node.s3_endpoint_in_cluster
                );
            }
            if let Some(csi) = &env.csi {
                println!(
                    "  csi:        driver {}, storage class {}, snapshot class {} (default); state in {}",
                    csi.driver,
                    csi.storage_class,
                    csi.snapshot_class,
                    csi.state_dir.display()
                );
            }
        }
        Cmd::Down { name } => {
            arca_testenv::Environment::down(&name)?;
            println!("environment {name} is down");
        }
    }
    Ok(())
}
