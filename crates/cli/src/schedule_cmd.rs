//! `arca schedule create|get|pause|unpause|delete`.

use arca_api::{Retention, Schedule, ScheduleSpec};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};

use crate::{
    Ctx,
    backup_cmd::{ask, not_found, refused},
    flags::{BackupFlags, object_name},
    output::{self, Format, age, when},
};

#[derive(Debug, clap::Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only obscure the clap derive"
)]
pub enum ScheduleCommand {
    /// Create a schedule.
    Create {
        #[arg(value_parser = object_name)]
        name: String,
        /// When: `0 3 * * *`, `@daily`, `@every 6h`.
        #[arg(long, value_parser = cadence)]
        schedule: String,
        /// The IANA time zone the expression is read in (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        #[command(flatten)]
        flags: BackupFlags,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
        /// Wait for the first time the expression names instead of backing up at once.
        #[arg(long)]
        skip_immediately: bool,
        /// Make the schedule the owner of its Backup objects.
        #[arg(long)]
        use_owner_references_in_backup: bool,
        /// Keep the newest N backups.
        #[arg(long)]
        keep_last: Option<u32>,
        /// Keep the newest backup of each of the last N hours.
        #[arg(long)]
        keep_hourly: Option<u32>,
        /// Keep the newest backup of each of the last N days.
        #[arg(long)]
        keep_daily: Option<u32>,
        /// Keep the newest backup of each of the last N weeks.
        #[arg(long)]
        keep_weekly: Option<u32>,
        /// Keep the newest backup of each of the last N months.
        #[arg(long)]
        keep_monthly: Option<u32>,
        /// Keep the newest backup of each of the last N years.
        #[arg(long)]
        keep_yearly: Option<u32>,
    },
    /// List schedules, or show one.
    Get { name: Option<String> },
    /// Stop making backups.
    Pause { name: String },
    /// Make backups again.
    Unpause { name: String },
    /// Delete a schedule (its backups stay).
    Delete {
        name: String,
        /// Do not ask.
        #[arg(long)]
        confirm: bool,
    },
}

fn cadence(text: &str) -> Result<String, String> {
    arca_policy::cadence::Cadence::parse(text, None)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

pub async fn run(ctx: &Ctx, command: ScheduleCommand) -> anyhow::Result<()> {
    let api: Api<Schedule> = Api::namespaced(ctx.client().await?, &ctx.namespace);
    match command {
        ScheduleCommand::Create {
            name,
            schedule,
            time_zone,
            flags,
            paused,
            skip_immediately,
            use_owner_references_in_backup,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
        } => {
            arca_policy::cadence::Cadence::parse(&schedule, time_zone.as_deref()).map_err(|e| {
                match e {
                    arca_policy::cadence::CadenceError::TimeZone(_) => {
                        anyhow::anyhow!("--time-zone: {e}")
                    }
                    _ => anyhow::anyhow!("--schedule: {e}"),
                }
            })?;
            let retention = Retention {
                keep_last,
                keep_hourly,
                keep_daily,
                keep_weekly,
                keep_monthly,
                keep_yearly,
            };
            let spec = ScheduleSpec {
                schedule,
                time_zone,
                template: flags.spec()?,
                paused,
                skip_immediately: skip_immediately.then_some(true),
                use_owner_references_in_backup: use_owner_references_in_backup.then_some(true),
                retention: (retention != Retention::default()).then_some(retention),
            };
            api.create(&PostParams::default(), &Schedule::new(&name, spec))
                .await
                .map_err(|e| refused("schedule", &name, e))?;
            println!("Schedule {name} created.");
            Ok(())
        }
        ScheduleCommand::Get { name } => {
            let schedules = match name {
                Some(name) => vec![
                    api.get_opt(&name)
                        .await?
                        .ok_or_else(|| not_found("schedule", &name, &ctx.namespace))?,
                ],
                None => api.list(&ListParams::default()).await?.items,
            };
            if ctx.output != Format::Table {
                return output::print_objects(ctx.output, &schedules);
            }
            let rows: Vec<Vec<String>> = schedules
                .iter()
                .map(|s| {
                    let st = s.status.clone().unwrap_or_default();
                    vec![
                        s.name_any(),
                        format!("{:?}", st.phase.unwrap_or_default()),
                        s.spec.schedule.clone(),
                        s.spec.paused.to_string(),
                        when(st.last_backup.as_ref()),
                        when(st.next_run.as_ref()),
                        age(s.metadata.creation_timestamp.as_ref()),
                    ]
                })
                .collect();
            output::print_table(
                &[
                    "NAME",
                    "STATUS",
                    "SCHEDULE",
                    "PAUSED",
                    "LAST BACKUP",
                    "NEXT RUN",
                    "AGE",
                ],
                &rows,
            );
            Ok(())
        }
        ScheduleCommand::Pause { name } => set_paused(ctx, &api, &name, true).await,
        ScheduleCommand::Unpause { name } => set_paused(ctx, &api, &name, false).await,
        ScheduleCommand::Delete { name, confirm } => {
            api.get_opt(&name)
                .await?
                .ok_or_else(|| not_found("schedule", &name, &ctx.namespace))?;
            if !confirm && !ask(&format!("Delete schedule {name}? Its backups stay. (y/N) "))? {
                println!("Nothing deleted.");
                return Ok(());
            }
            api.delete(&name, &DeleteParams::default()).await?;
            println!(
                "Schedule {name} deleted; its backups stay (delete them with `arca backup delete`)."
            );
            Ok(())
        }
    }
}

async fn set_paused(
    ctx: &Ctx,
    api: &Api<Schedule>,
    name: &str,
    paused: bool,
) -> anyhow::Result<()> {
    api.get_opt(name)
        .await?
        .ok_or_else(|| not_found("schedule", name, &ctx.namespace))?;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"paused": paused}})),
    )
    .await?;
    println!(
        "Schedule {name} {}.",
        if paused { "paused" } else { "unpaused" }
    );
    Ok(())
}
