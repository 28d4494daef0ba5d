//! `arca restore create|get|describe|logs`.

use std::collections::BTreeMap;

use arca_api::{
    ConfigMapReference, DownloadTargetKind, ExistingResourcePolicy, Restore, RestorePhase,
    RestoreSpec,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};

use crate::{
    Ctx,
    backup_cmd::{not_found, print_results, refused},
    files,
    flags::{mappings, object_name, selector},
    output::{self, Format, age, when},
    wait,
};

#[derive(Debug, clap::Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the clap derive"
)]
pub enum RestoreCommand {
    /// Restore a backup (or the newest Completed backup of a schedule).
    #[command(group(clap::ArgGroup::new("source").required(true).args(["from_backup", "from_schedule"])))]
    Create {
        /// The restore's name (default: <backup>-<YYYYMMDDhhmmss>).
        #[arg(value_parser = object_name)]
        name: Option<String>,
        /// The backup to restore.
        #[arg(long)]
        from_backup: Option<String>,
        /// Restore the newest Completed backup of this schedule.
        #[arg(long)]
        from_schedule: Option<String>,
        /// Restore namespace a as b, c as d: `a:b,c:d`.
        #[arg(long, value_parser = mappings)]
        namespace_mappings: Option<BTreeMap<String, String>>,
        /// Namespaces of the backup to restore, comma-separated. Default: all.
        #[arg(long, value_delimiter = ',')]
        include_namespaces: Vec<String>,
        /// Namespaces of the backup not restored, comma-separated.
        #[arg(long, value_delimiter = ',')]
        exclude_namespaces: Vec<String>,
        /// Resources to restore, comma-separated. Default: all.
        #[arg(long, value_delimiter = ',')]
        include_resources: Vec<String>,
        /// Resources not restored, comma-separated.
        #[arg(long, value_delimiter = ',')]
        exclude_resources: Vec<String>,
        /// true: all cluster-scoped resources of the backup; false: none.
        #[arg(long)]
        include_cluster_resources: Option<bool>,
        /// Only objects matching this label selector.
        #[arg(short = 'l', long, value_parser = selector)]
        selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
        /// What an existing object gets: none (kept, warned) or update (back to the backup).
        #[arg(long, value_parser = policy)]
        existing_resource_policy: Option<ExistingResourcePolicy>,
        /// Check every write with the apiserver (dryRun=All), write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep the node ports of Services.
        #[arg(long)]
        preserve_nodeports: bool,
        /// Restore pod volume data (default true).
        #[arg(long)]
        restore_volumes: Option<bool>,
        /// A ConfigMap of the namespace holding resource modifier rules (Velero's format)
        /// applied to the items as they are restored.
        #[arg(long, value_parser = object_name)]
        resource_modifier_configmap: Option<String>,
        /// The ServiceAccount of the namespace the restore acts as (default: the operator's
        /// own in its namespace, else the operator's `--default-service-account`).
        #[arg(long)]
        service_account_name: Option<String>,
        /// Restore a backup nothing authenticates: one Velero made, or one of Arca's storage
        /// format 1. Only if you trust everyone who can write to the bucket.
        #[arg(long)]
        allow_unauthenticated_backup: bool,
        /// Wait until it ends, showing progress; exit 1 unless it is Completed.
        #[arg(long)]
        wait: bool,
    },
    /// List restores, or show one.
    Get { name: Option<String> },
    /// Describe a restore: phase, counts per outcome, warnings and errors.
    Describe { name: String },
    /// Print a restore's log (no storage credentials needed).
    Logs { name: String },
}

fn policy(text: &str) -> Result<ExistingResourcePolicy, String> {
    match text {
        "none" => Ok(ExistingResourcePolicy::None),
        "update" => Ok(ExistingResourcePolicy::Update),
        other => Err(format!("{other:?} is neither none nor update")),
    }
}

pub async fn run(ctx: &Ctx, command: RestoreCommand) -> anyhow::Result<()> {
    let api: Api<Restore> = Api::namespaced(ctx.client().await?, &ctx.namespace);
    match command {
        RestoreCommand::Create {
            name,
            from_backup,
            from_schedule,
            namespace_mappings,
            include_namespaces,
            exclude_namespaces,
            include_resources,
            exclude_resources,
            include_cluster_resources,
            selector,
            existing_resource_policy,
            dry_run,
            preserve_nodeports,
            restore_volumes,
            resource_modifier_configmap,
            service_account_name,
            allow_unauthenticated_backup,
            wait,
        } => {
            let source = from_backup
                .clone()
                .or(from_schedule.clone())
                .unwrap_or_default();
            let name = name.unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    &source[..source.len().min(47)],
                    jiff::Timestamp::now().strftime("%Y%m%d%H%M%S")
                )
            });
            let spec = RestoreSpec {
                backup_name: from_backup,
                schedule_name: from_schedule,
                included_namespaces: include_namespaces,
                excluded_namespaces: exclude_namespaces,
                included_resources: include_resources,
                excluded_resources: exclude_resources,
                include_cluster_resources,
                label_selector: selector,
                namespace_mapping: namespace_mappings.unwrap_or_default(),
                existing_resource_policy,
                preserve_node_ports: preserve_nodeports.then_some(true),
                restore_p_vs: restore_volumes,
                dry_run,
                service_account_name,
                allow_unauthenticated_backup,
                resource_modifier: resource_modifier_configmap.map(|name| ConfigMapReference {
                    api_group: None,
                    kind: "ConfigMap".into(),
                    name,
                }),
                ..RestoreSpec::default()
            };
            api.create(&PostParams::default(), &Restore::new(&name, spec))
                .await
                .map_err(|e| refused("restore", &name, e))?;
            println!(
                "Restore {name} submitted. `arca restore describe {name} -n {}` shows how it goes.",
                ctx.namespace
            );
            if wait {
                let end =
                    wait::until_done(&format!("restore {name}"), || snapshot(&api, &name)).await?;
                println!("Restore {name}: {}", end.phase);
                if end.phase != "Completed" {
                    anyhow::bail!(
                        "restore {name} ended {}: see `arca restore describe {name}`",
                        end.phase
                    );
                }
            }
            Ok(())
        }
        RestoreCommand::Get { name } => {
            let restores = match name {
                Some(name) => vec![
                    api.get_opt(&name)
                        .await?
                        .ok_or_else(|| not_found("restore", &name, &ctx.namespace))?,
                ],
                None => api.list(&ListParams::default()).await?.items,
            };
            if ctx.output != Format::Table {
                return output::print_objects(ctx.output, &restores);
            }
            let rows: Vec<Vec<String>> = restores
                .iter()
                .map(|r| {
                    let s = r.status.clone().unwrap_or_default();
                    vec![
                        r.name_any(),
                        s.backup_name
                            .clone()
                            .or(r.spec.backup_name.clone())
                            .unwrap_or_default(),
                        format!("{:?}", s.phase.unwrap_or_default()),
                        s.errors.to_string(),
                        s.warnings.to_string(),
                        if r.spec.dry_run {
                            "yes".into()
                        } else {
                            String::new()
                        },
                        age(r.metadata.creation_timestamp.as_ref()),
                    ]
                })
                .collect();
            output::print_table(
                &[
                    "NAME", "BACKUP", "STATUS", "ERRORS", "WARNINGS", "DRY RUN", "AGE",
                ],
                &rows,
            );
            Ok(())
        }
        RestoreCommand::Describe { name } => {
            let r = api
                .get_opt(&name)
                .await?
                .ok_or_else(|| not_found("restore", &name, &ctx.namespace))?;
            if ctx.output != Format::Table {
                return output::print_objects(ctx.output, &[r]);
            }
            let s = r.status.clone().unwrap_or_default();
            println!("Name:        {name}");
            println!(
                "Backup:      {}",
                s.backup_name
                    .clone()
                    .or(r.spec.backup_name.clone())
                    .unwrap_or_default()
            );
            println!(
                "Phase:       {:?}{}",
                s.phase.unwrap_or_default(),
                if r.spec.dry_run { " (dry run)" } else { "" }
            );
            if let Some(reason) = &s.failure_reason {
                println!("Failure:     {reason}");
            }
            for problem in &s.validation_errors {
                println!("Invalid:     {problem}");
            }
            if !r.spec.namespace_mapping.is_empty() {
                let pairs: Vec<String> = r
                    .spec
                    .namespace_mapping
                    .iter()
                    .map(|(a, b)| format!("{a} -> {b}"))
                    .collect();
                println!("Mapping:     {}", pairs.join(", "));
            }
            println!("Started:     {}", when(s.start_timestamp.as_ref()));
            println!("Completed:   {}", when(s.completion_timestamp.as_ref()));
            let p = s.progress.clone().unwrap_or_default();
            println!("Items:       {} of {}", p.items_restored, p.total_items);
            if p.total_volume_bytes > 0 {
                println!(
                    "Volume data: {} of {} written by the node agents",
                    crate::output::bytes(p.volume_bytes_restored),
                    crate::output::bytes(p.total_volume_bytes)
                );
            }
            let o = s.outcomes.clone().unwrap_or_default();
            println!(
                "Outcomes:    {} created, {} updated, {} existing, {} skipped, {} failed",
                o.created, o.updated, o.existing, o.skipped, o.failed
            );
            let h = s.hook_status.clone().unwrap_or_default();
            println!(
                "Hooks:       {} attempted, {} failed",
                h.hooks_attempted, h.hooks_failed
            );
            println!("Errors:      {}", s.errors);
            println!("Warnings:    {}", s.warnings);
            if s.errors + s.warnings > 0 && s.phase.is_some_and(|p| p.is_terminal()) {
                match files::print_json(ctx, DownloadTargetKind::RestoreResults, &name).await {
                    Ok(results) => print_results(&results),
                    Err(e) => println!("  (results not readable: {e})"),
                }
            }
            Ok(())
        }
        RestoreCommand::Logs { name } => {
            api.get_opt(&name)
                .await?
                .ok_or_else(|| not_found("restore", &name, &ctx.namespace))?;
            files::print_log(ctx, DownloadTargetKind::RestoreLog, &name).await
        }
    }
}

async fn snapshot(api: &Api<Restore>, name: &str) -> anyhow::Result<wait::Snapshot> {
    let r = api.get(name).await?;
    let s = r.status.unwrap_or_default();
    let phase: RestorePhase = s.phase.unwrap_or_default();
    let p = s.progress.unwrap_or_default();
    Ok(wait::Snapshot {
        phase: format!("{phase:?}"),
        done: p.items_restored,
        total: p.total_items,
        volume: (p.volume_bytes_restored, p.total_volume_bytes),
        terminal: phase.is_terminal(),
    })
}
