//! `make bench`: Arca measured against its floor, side by side, in one run, on the real test
//! environment (a fresh one named `bench`).
//!
//! - backup of N small ConfigMaps and Secrets (1-2 KiB) over 100 namespaces, against the
//!   floor: a plain paginated LIST of the same resources;
//! - restore of the first (smallest) set, against creating as many objects one at a time;
//! - the operator's peak resident memory (VmHWM of the `arca server` process);
//! - pod volume data: Arca (the node agent), restic and kopia on the same data to the same
//!   S3 server: first backup, unchanged backup and restore, in rotated rounds, with
//!   uploaded bytes, peak memory, CPU seconds and load of each run;
//! - `--index-only`: the operator's peak memory restoring a large backup's index (300k
//!   objects) against its floor (idle, and restoring 1k objects);
//! - `--data-mover` (`make bench-mover`): a CSI snapshot of `--volume-gib` GiB moved into the
//!   bucket by Arca installed from its image on a real node, against `restic backup` of the
//!   same data (an environment with a real node and the CSI driver; root).

mod index;
mod mover;
mod seed;
mod steps;
mod volumes;

use std::{path::PathBuf, time::Duration};

use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Object counts to back up, in order (each adds to the previous).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<usize>,
    /// GiB of pod volume data backed up by Arca, restic and kopia (0: skip; fractions
    /// allowed, e.g. 0.25 for a quick check).
    #[arg(long, default_value_t = 2.0)]
    volume_gib: f64,
    /// Rounds of the volume benchmark: each on fresh repositories, the tools' order rotated.
    #[arg(long, default_value_t = 2)]
    volume_rounds: usize,
    /// Only the pod volume benchmark (no object counts).
    #[arg(long)]
    volumes_only: bool,
    /// Only the index benchmark: the operator's peak memory restoring (dry run) a backup of
    /// `--index-objects` objects, after a backup of `--index-floor-objects`.
    #[arg(long)]
    index_only: bool,
    /// Only the data mover benchmark (a real node and the CSI driver; needs `make image`).
    #[arg(long)]
    data_mover: bool,
    /// Objects in the large backup of the index benchmark.
    #[arg(long, default_value_t = 300_000)]
    index_objects: usize,
    /// Objects in the small backup restored first (the floor).
    #[arg(long, default_value_t = 1_000)]
    index_floor_objects: usize,
    /// The `arca` binary to measure (release build).
    #[arg(long, default_value = "target/release/arca")]
    arca: PathBuf,
    /// Where the report goes (also printed).
    #[arg(long, default_value = "target/bench/report.md")]
    report: PathBuf,
    /// Keep the environment afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let name = format!("bench-{}", std::process::id());
    let options = arca_testenv::UpOptions {
        real_node: args.data_mover,
        csi: args.data_mover,
    };
    let env =
        arca_testenv::Environment::up_with(&arca_testenv::testenv_root(), &name, options).await?;
    let sizes: &[usize] = if args.volumes_only { &[] } else { &args.sizes };
    let result = if args.data_mover {
        mover::run(&env, &args.arca, args.volume_gib).await
    } else if args.index_only {
        index::run(
            &env,
            &args.arca,
            args.index_floor_objects,
            args.index_objects,
        )
        .await
    } else {
        let volumes = volumes::Settings {
            gib: args.volume_gib,
            rounds: args.volume_rounds,
        };
        steps::run_all(&env, &args.arca, sizes, volumes).await
    };
    if !args.keep {
        arca_testenv::Environment::down(&name)?;
    }
    let report = result?;
    if let Some(dir) = args.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report, &report)?;
    println!("{report}");
    Ok(())
}

/// Seconds, to two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// The test environment's bucket under `prefix` ("" for all of it), as Arca's own store.
pub async fn test_bucket(
    env: &arca_testenv::Environment,
    prefix: &str,
) -> anyhow::Result<arca_store::S3Store> {
    let s3 = &env.s3;
    Ok(arca_store::S3Store::new(arca_store::S3Config {
        bucket: s3.bucket.clone(),
        prefix: prefix.into(),
        region: Some(s3.region.clone()),
        endpoint: Some(s3.endpoint.clone()),
        force_path_style: true,
        credentials: Some(arca_store::SharedCredentials {
            access_key_id: s3.access_key_id.clone(),
            secret_access_key: s3.secret_access_key.clone(),
            session_token: None,
        }),
        ..Default::default()
    })
    .await?)
}
