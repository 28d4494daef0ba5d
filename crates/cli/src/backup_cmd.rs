//! `arca backup create|get|describe|logs|download|delete`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use arca_api::{
    Backup, BackupPhase, DeleteBackupRequest, DeleteBackupRequestSpec, DownloadTargetKind,
    Schedule, labels,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

use crate::{
    Ctx, files,
    flags::{BackupFlags, object_name},
    output::{self, Format, age, when},
    wait,
};

#[derive(Debug, clap::Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the clap derive"
)]
pub enum BackupCommand {
    /// Create a backup.
    Create {
        /// The backup's name.
        #[arg(value_parser = object_name)]
        name: String,
        #[command(flatten)]
        flags: BackupFlags,
        /// Use the spec of this schedule's template (the other flags are ignored).
        #[arg(long)]
        from_schedule: Option<String>,
        /// Wait until it ends, showing progress; exit 1 unless it is Completed.
        #[arg(long)]
        wait: bool,
    },
    /// List backups, or show one.
    Get { name: Option<String> },
    /// Describe a backup: phase, times, items, warnings and errors, hooks.
    Describe {
        name: String,
        /// Also list every item written (in the order written) and every pod volume
        /// snapshot, read from storage.
        #[arg(long)]
        details: bool,
    },
    /// Print a backup's log (no storage credentials needed).
    Logs { name: String },
    /// Save a backup's contents (resources.tar.zst) to a file.
    Download {
        name: String,
        /// Where to write (default: <name>-data.tar.zst).
        #[arg(short = 'f', long)]
        file: Option<std::path::PathBuf>,
    },
    /// Delete backups and their data (through a DeleteBackupRequest), after confirmation. A
    /// backup still running is stopped instead: its Backup object is deleted, and the operator
    /// removes what the run wrote.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        /// Do not ask.
        #[arg(long)]
        confirm: bool,
    },
}

pub async fn run(ctx: &Ctx, command: BackupCommand) -> anyhow::Result<()> {
    let api: Api<Backup> = Api::namespaced(ctx.client().await?, &ctx.namespace);
    match command {
        BackupCommand::Create {
            name,
            flags,
            from_schedule,
            wait,
        } => {
            let spec = match &from_schedule {
                Some(schedule) => {
                    let schedules: Api<Schedule> =
                        Api::namespaced(ctx.client().await?, &ctx.namespace);
                    schedules
                        .get_opt(schedule)
                        .await?
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "--from-schedule: no schedule {schedule:?} in namespace {}",
                                ctx.namespace
                            )
                        })?
                        .spec
                        .template
                }
                None => flags.spec()?,
            };
            let mut backup = Backup::new(&name, spec);
            if let Some(schedule) = from_schedule {
                backup.metadata.labels = Some(
                    [(labels::SCHEDULE_NAME.to_string(), schedule)]
                        .into_iter()
                        .collect(),
                );
            }
            api.create(&PostParams::default(), &backup)
                .await
                .map_err(|e| refused("backup", &name, e))?;
            println!(
                "Backup {name} submitted. `arca backup describe {name} -n {}` shows how it goes.",
                ctx.namespace
            );
            if wait {
                let end =
                    wait::until_done(&format!("backup {name}"), || snapshot(&api, &name)).await?;
                println!("Backup {name}: {}", end.phase);
                if end.phase != "Completed" {
                    anyhow::bail!(
                        "backup {name} ended {}: see `arca backup describe {name}`",
                        end.phase
                    );
                }
            }
            Ok(())
        }
        BackupCommand::Get { name } => {
            let backups = match name {
                Some(name) => vec![
                    api.get_opt(&name)
                        .await?
                        .ok_or_else(|| not_found("backup", &name, &ctx.namespace))?,
                ],
                None => api.list(&ListParams::default()).await?.items,
            };
            if ctx.output != Format::Table {
                return output::print_objects(ctx.output, &backups);
            }
            let rows: Vec<Vec<String>> = backups
                .iter()
                .map(|b| {
                    let s = b.status.clone().unwrap_or_default();
                    vec![
                        b.name_any(),
                        format!("{:?}", s.phase.unwrap_or_default()),
                        s.errors.to_string(),
                        s.warnings.to_string(),
                        when(s.start_timestamp.as_ref()),
                        when(s.expiration.as_ref()),
                        b.spec
                            .storage_location
                            .clone()
                            .or_else(|| b.labels().get(labels::STORAGE_LOCATION).cloned())
                            .unwrap_or_default(),
                        age(b.metadata.creation_timestamp.as_ref()),
                    ]
                })
                .collect();
            output::print_table(
                &[
                    "NAME", "STATUS", "ERRORS", "WARNINGS", "STARTED", "EXPIRES", "LOCATION", "AGE",
                ],
                &rows,
            );
            Ok(())
        }
        BackupCommand::Describe { name, details } => {
            let backup = api
                .get_opt(&name)
                .await?
                .ok_or_else(|| not_found("backup", &name, &ctx.namespace))?;
            if ctx.output != Format::Table {
                return output::print_objects(ctx.output, &[backup]);
            }
            describe(ctx, &backup).await?;
            if details {
                print_details(ctx, &backup).await?;
            }
            Ok(())
        }
        BackupCommand::Logs { name } => {
            api.get_opt(&name)
                .await?
                .ok_or_else(|| not_found("backup", &name, &ctx.namespace))?;
            files::print_log(ctx, DownloadTargetKind::BackupLog, &name).await
        }
        BackupCommand::Download { name, file } => {
            api.get_opt(&name)
                .await?
                .ok_or_else(|| not_found("backup", &name, &ctx.namespace))?;
            let path = file.unwrap_or_else(|| format!("{name}-data.tar.zst").into());
            let bytes = files::save(ctx, DownloadTargetKind::BackupContents, &name, &path).await?;
            println!(
                "Backup {name}: {bytes} bytes written to {} (read it with: zstd -d < {} | tar t)",
                path.display(),
                path.display()
            );
            Ok(())
        }
        BackupCommand::Delete { names, confirm } => {
            let mut running = Vec::new();
            for name in &names {
                let backup = api
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| not_found("backup", name, &ctx.namespace))?;
                let phase = backup
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .unwrap_or_default();
                // A Backup the storage sync made is New until its status arrives: not a run.
                let synced = backup.labels().contains_key(labels::SYNCED_FROM_STORAGE);
                if phase == BackupPhase::InProgress || (phase == BackupPhase::New && !synced) {
                    running.push(name.clone());
                }
            }
            let question = if running.is_empty() {
                format!(
                    "Delete backup(s) {} and all their data? (y/N) ",
                    names.join(", ")
                )
            } else {
                format!(
                    "Delete backup(s) {} and all their data ({} still running: stopped, and what they wrote removed)? (y/N) ",
                    names.join(", "),
                    running.join(", ")
                )
            };
            if !confirm && !ask(&question)? {
                println!("Nothing deleted.");
                return Ok(());
            }
            for name in &running {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => println!(
                        "Backup {name} was running: its Backup object is deleted; the operator stops the run and removes what it wrote (an Event BackupCanceled says what)."
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(refused("backup", name, e)),
                }
            }
            let names: Vec<String> = names.into_iter().filter(|n| !running.contains(n)).collect();
            let requests: Api<DeleteBackupRequest> =
                Api::namespaced(ctx.client().await?, &ctx.namespace);
            for name in names {
                let mut request = DeleteBackupRequest::new(
                    "",
                    DeleteBackupRequestSpec {
                        backup_name: name.clone(),
                    },
                );
                request.metadata.name = None;
                request.metadata.generate_name = Some(format!("{}-", &name[..name.len().min(50)]));
                request.metadata.labels = Some(
                    [(labels::DELETE_BACKUP_NAME.to_string(), name.clone())]
                        .into_iter()
                        .collect(),
                );
                requests
                    .create(&PostParams::default(), &request)
                    .await
                    .context("creating the DeleteBackupRequest")?;
                println!(
                    "Request to delete backup {name} submitted; `arca backup get` shows it Deleting, then gone."
                );
            }
            Ok(())
        }
    }
}

async fn snapshot(api: &Api<Backup>, name: &str) -> anyhow::Result<wait::Snapshot> {
    let b = api.get(name).await?;
    let s = b.status.unwrap_or_default();
    let phase = s.phase.unwrap_or_default();
    let progress = s.progress.unwrap_or_default();
    Ok(wait::Snapshot {
        phase: format!("{phase:?}"),
        done: progress.items_backed_up,
        total: progress.total_items,
        volume: (progress.volume_bytes_backed_up, progress.total_volume_bytes),
        terminal: phase.is_terminal() || phase == BackupPhase::Deleting,
    })
}

async fn describe(ctx: &Ctx, b: &Backup) -> anyhow::Result<()> {
    let s = b.status.clone().unwrap_or_default();
    let spec = &b.spec;
    // An empty list means everything when including, nothing when excluding.
    let list = |v: &[String], empty: &str| {
        if v.is_empty() {
            empty.to_string()
        } else {
            v.join(", ")
        }
    };
    println!("Name:         {}", b.name_any());
    println!("Namespace:    {}", ctx.namespace);
    println!("Phase:        {:?}", s.phase.unwrap_or_default());
    if let Some(reason) = &s.failure_reason {
        println!("Failure:      {reason}");
    }
    for problem in &s.validation_errors {
        println!("Invalid:      {problem}");
    }
    println!();
    println!(
        "Namespaces:   included {}; excluded {}",
        list(&spec.included_namespaces, "*"),
        list(&spec.excluded_namespaces, "none")
    );
    if spec.uses_scoped_resource_filters() {
        println!(
            "Namespaced resources: included {}; excluded {}",
            list(&spec.included_namespace_scoped_resources, "*"),
            list(&spec.excluded_namespace_scoped_resources, "none")
        );
        println!(
            "Cluster-scoped resources: included {}; excluded {}",
            list(&spec.included_cluster_scoped_resources, "auto"),
            list(&spec.excluded_cluster_scoped_resources, "none")
        );
    } else {
        println!(
            "Resources:    included {}; excluded {}",
            list(&spec.included_resources, "*"),
            list(&spec.excluded_resources, "none")
        );
        println!(
            "Cluster-scoped: {}",
            match spec.include_cluster_resources {
                Some(true) => "all",
                Some(false) => "none",
                None => "auto",
            }
        );
    }
    println!(
        "Location:     {}",
        spec.storage_location
            .clone()
            .or_else(|| b.labels().get(labels::STORAGE_LOCATION).cloned())
            .unwrap_or_else(|| "default".into())
    );
    println!(
        "TTL:          {}",
        spec.ttl
            .map(|t| t.to_string())
            .unwrap_or_else(|| "operator default".into())
    );
    println!();
    println!("Started:      {}", when(s.start_timestamp.as_ref()));
    println!("Completed:    {}", when(s.completion_timestamp.as_ref()));
    println!("Expires:      {}", when(s.expiration.as_ref()));
    let progress = s.progress.clone().unwrap_or_default();
    println!(
        "Items:        {} of {} written ({} bytes compressed)",
        progress.items_backed_up,
        progress.total_items,
        s.archive_bytes.unwrap_or_default()
    );
    if progress.total_volume_bytes > 0 {
        println!(
            "Volume data:  {} of {} read by the node agents",
            output::bytes(progress.volume_bytes_backed_up),
            output::bytes(progress.total_volume_bytes)
        );
    }
    let hooks = s.hook_status.clone().unwrap_or_default();
    println!(
        "Hooks:        {} attempted, {} failed",
        hooks.hooks_attempted, hooks.hooks_failed
    );
    if s.csi_volume_snapshots_attempted > 0 {
        let whereto = if spec.snapshot_move_data == Some(true) {
            "their data moved into the bucket (a snapshot not moved is kept: see the errors and warnings)"
        } else {
            "kept"
        };
        println!(
            "CSI snapshots: {} of {} ready, {whereto}",
            s.csi_volume_snapshots_completed, s.csi_volume_snapshots_attempted
        );
    }
    println!("Errors:       {}", s.errors);
    println!("Warnings:     {}", s.warnings);
    if s.errors + s.warnings > 0 && s.phase.is_some_and(|p| p.is_terminal()) {
        match files::print_json(ctx, DownloadTargetKind::BackupResults, &b.name_any()).await {
            Ok(results) => print_results(&results),
            Err(e) => println!("  (results not readable: {e})"),
        }
    }
    Ok(())
}

/// Every item of the backup's index, in the order written, and its volume snapshots.
async fn print_details(ctx: &Ctx, b: &Backup) -> anyhow::Result<()> {
    let name = b.name_any();
    let phase = b.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
    if !matches!(phase, BackupPhase::Completed | BackupPhase::PartiallyFailed) {
        println!(
            "\nDetails:      none: the backup is {phase:?} (items are listed once it ends Completed or PartiallyFailed)"
        );
        return Ok(());
    }
    println!("\nItems (in the order written; RESOURCE NAMESPACE/NAME):");
    let mut out = std::io::stdout().lock();
    let mut count = 0u64;
    files::for_each_line(ctx, DownloadTargetKind::BackupIndex, &name, |line| {
        let entry: arca_store::archive::IndexEntry = serde_json::from_slice(line)
            .map_err(|e| std::io::Error::other(format!("line {} of the index: {e}", count + 1)))?;
        count += 1;
        match &entry.namespace {
            Some(ns) => writeln!(out, "  {}  {ns}/{}", entry.group_resource(), entry.name),
            None => writeln!(out, "  {}  {}", entry.group_resource(), entry.name),
        }
    })
    .await
    .context("reading the backup's index")?;
    drop(out);
    println!("  ({count} items)");
    print_csi_snapshots(ctx, b).await?;
    println!("\nPod volume snapshots (files copied by the node agent):");
    let volumes = match files::print_json(ctx, DownloadTargetKind::BackupVolumes, &name).await {
        Ok(json) => serde_json::from_value::<arca_store::archive::VolumeSnapshots>(json)
            .context("reading volumes.json")?,
        // No volume data was asked for (or none was copied: the errors above say why).
        Err(e) if e.to_string().contains("volumes.json") => {
            println!("  none");
            return Ok(());
        }
        Err(e) => return Err(e.context("reading the backup's volumes.json")),
    };
    for v in &volumes.snapshots {
        let what = match (&v.claim, v.is_claim_only()) {
            (Some(claim), true) => format!("claim {}/{claim} (no pod mounted it)", v.namespace),
            (Some(claim), false) => format!(
                "{}/{} volume {} (claim {claim})",
                v.namespace, v.pod, v.volume
            ),
            (None, _) => format!("{}/{} volume {}", v.namespace, v.pod, v.volume),
        };
        println!(
            "  {what}: snapshot {} in {}, {} bytes, {} uploaded",
            v.snapshot_id.get(..12).unwrap_or(&v.snapshot_id),
            v.repository,
            v.total_bytes,
            v.bytes_uploaded
        );
    }
    if volumes.snapshots.is_empty() {
        println!("  none");
    }
    Ok(())
}

/// The claims snapshotted through CSI (their data stays in the storage system).
async fn print_csi_snapshots(ctx: &Ctx, b: &Backup) -> anyhow::Result<()> {
    println!("\nCSI snapshots (kept in the storage system until the backup is deleted):");
    let attempted = b
        .status
        .as_ref()
        .map(|s| s.csi_volume_snapshots_attempted)
        .unwrap_or_default();
    let completed = b
        .status
        .as_ref()
        .map(|s| s.csi_volume_snapshots_completed)
        .unwrap_or_default();
    if attempted == 0 {
        println!("  none");
        return Ok(());
    }
    if completed == 0 {
        println!("  none ready ({attempted} failed: see the errors above)");
        return Ok(());
    }
    let json = files::print_json(ctx, DownloadTargetKind::BackupCsiSnapshots, &b.name_any())
        .await
        .context("reading the backup's csi-snapshots.json")?;
    let snapshots: arca_store::archive::CsiSnapshots =
        serde_json::from_value(json).context("reading csi-snapshots.json")?;
    for s in &snapshots.snapshots {
        println!(
            "  claim {}/{} (volume {}): snapshot {} of {}, class {}, content {}{}",
            s.namespace,
            s.claim,
            s.volume,
            s.snapshot_handle,
            s.driver,
            s.snapshot_class,
            s.content,
            s.restore_size
                .map(|b| format!(", {b} bytes"))
                .unwrap_or_default()
        );
    }
    let failed = attempted as usize - snapshots.snapshots.len().min(attempted as usize);
    if failed > 0 {
        println!("  ({failed} failed: see the errors above)");
    }
    Ok(())
}

/// The messages of a `results.json`.
pub fn print_results(results: &serde_json::Value) {
    for severity in ["errors", "warnings"] {
        let group = &results[severity];
        let mut lines = Vec::new();
        for scope in ["arca", "cluster"] {
            for m in group[scope].as_array().into_iter().flatten() {
                lines.push(format!("  {scope}: {}", m.as_str().unwrap_or_default()));
            }
        }
        if let Some(namespaces) = group["namespaces"].as_object() {
            for (ns, messages) in namespaces {
                for m in messages.as_array().into_iter().flatten() {
                    lines.push(format!("  {ns}: {}", m.as_str().unwrap_or_default()));
                }
            }
        }
        if !lines.is_empty() {
            println!(
                "{}:",
                if severity == "errors" {
                    "Errors"
                } else {
                    "Warnings"
                }
            );
            for l in lines {
                println!("{l}");
            }
        }
    }
}

/// Asks a yes/no question on a terminal; refuses to guess without one.
pub fn ask(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not asking without a terminal: add --confirm");
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn not_found(kind: &str, name: &str, namespace: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no {kind} {name:?} in namespace {namespace} (`arca {kind} get -n {namespace}` lists them)"
    )
}

/// The apiserver's refusal, said plainly.
pub fn refused(kind: &str, name: &str, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 409 => {
            anyhow::anyhow!("a {kind} named {name} already exists")
        }
        kube::Error::Api(s) => anyhow::anyhow!("the {kind} was refused: {}", s.message),
        other => anyhow::anyhow!("creating the {kind}: {other}"),
    }
}
