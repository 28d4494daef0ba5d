//! `arca`: the operator (`server`), and the user's CLI: backups, restores, schedules,
//! locations, install. Also usable as a kubectl plugin (`kubectl arca …`, when installed as
//! `kubectl-arca`).

mod agent;
mod backup_cmd;
mod crd;
mod files;
mod flags;
mod hold;
mod install;
mod kube_args;
mod location_cmd;
mod logging;
mod output;
mod restore_cmd;
mod restore_helper;
mod schedule_cmd;
mod server;
mod version;
mod volume_cmd;
mod wait;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "arca",
    version,
    about = "Kubernetes backup and restore",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: kube_args::KubeArgs,
    /// The namespace of Arca's resources (the operator's, or a tenant's own).
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "ARCA_NAMESPACE",
        default_value = "arca-system"
    )]
    pub namespace: String,
    /// A PEM file of the CA that signed the store's certificate, for `logs`, `download` and
    /// `describe` (which read files from the store through short-lived URLs).
    #[arg(long, global = true, env = "ARCA_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// Output: table (for people), json or yaml (for programs).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = output::Format::Table)]
    pub output: output::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with backups: create, get, describe, logs, download, delete.
    #[command(subcommand)]
    Backup(backup_cmd::BackupCommand),
    /// Work with restores: create, get, describe, logs.
    #[command(subcommand)]
    Restore(restore_cmd::RestoreCommand),
    /// Work with schedules: create, get, pause, unpause, delete.
    #[command(subcommand)]
    Schedule(schedule_cmd::ScheduleCommand),
    /// Work with storage locations: create, get, set.
    #[command(subcommand)]
    Location(location_cmd::LocationCommand),
    /// Pod volume data: the password of a namespace's repository, for `restic`.
    #[command(subcommand)]
    Volume(volume_cmd::VolumeCommand),
    /// Install Arca in the cluster (or print what would be installed).
    Install(Box<install::InstallArgs>),
    /// Remove Arca from the cluster; backups in the bucket are kept.
    Uninstall(install::uninstall::UninstallArgs),
    /// Print the client's version and the installed operator's.
    Version,
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completion { shell: clap_complete::Shell },
    /// Print Arca's CustomResourceDefinitions as YAML (or write one file each with --dir).
    Crd(crd::CrdArgs),
    /// Run the operator: the controllers of locations, backups, restores, schedules.
    Server(Box<server::ServerArgs>),
    /// Run the node agent: moves the pod volume data of its node (a DaemonSet).
    Agent(Box<agent::AgentArgs>),
    /// Wait, as a restored pod's init container, until the node agent has restored every
    /// listed volume (added by restores; not for people).
    #[command(hide = true)]
    RestoreHelper(restore_helper::RestoreHelperArgs),
    /// Keep a data mover pod's volume mounted until the pod is deleted (the container of the
    /// pods backups with `snapshotMoveData` make; not for people).
    #[command(hide = true)]
    Hold,
}

/// jemalloc rather than glibc's malloc: the node agent's readers and writers allocate and
/// free buffers of a chunk (0.5-8 MiB) thousands of times a second; glibc gave each back to
/// the kernel (its per-thread arenas trim with `madvise`) and took it again with a page fault
/// per 4 KiB, a fifth of a restore's CPU (profiled, docs/benchmarks.md). jemalloc keeps freed
/// pages for reuse a few seconds before it returns them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let outcome = match cli.command {
        Command::Crd(ref args) => crd::run(args),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "arca", &mut std::io::stdout());
            Ok(())
        }
        Command::RestoreHelper(ref args) => restore_helper::run(args),
        Command::Hold => hold::run(),
        Command::Server(ref args) => tokio_main(server::run(
            cli.kube.clone(),
            cli.namespace.clone(),
            (**args).clone(),
        )),
        Command::Agent(ref args) => {
            agent::tune_allocator();
            tokio_main(agent::run(
                cli.kube.clone(),
                cli.namespace.clone(),
                (**args).clone(),
            ))
        }
        _ => tokio_main(run(cli)),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&format!("{err:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        kube: cli.kube.clone(),
        namespace: cli.namespace.clone(),
        output: cli.output,
        cacert: cli.cacert.clone(),
    };
    match cli.command {
        Command::Backup(c) => backup_cmd::run(&ctx, c).await,
        Command::Restore(c) => restore_cmd::run(&ctx, c).await,
        Command::Schedule(c) => schedule_cmd::run(&ctx, c).await,
        Command::Location(c) => location_cmd::run(&ctx, c).await,
        Command::Volume(c) => volume_cmd::run(&ctx, c).await,
        Command::Install(args) => install::run(&ctx, *args).await,
        Command::Uninstall(args) => install::uninstall::run(&ctx, args).await,
        Command::Version => version::run(&ctx).await,
        Command::Crd(_)
        | Command::Completion { .. }
        | Command::Server(_)
        | Command::Agent(_)
        | Command::RestoreHelper(_)
        | Command::Hold => Ok(()),
    }
}

/// What every command needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub kube: kube_args::KubeArgs,
    pub namespace: String,
    pub output: output::Format,
    pub cacert: Option<std::path::PathBuf>,
}

impl Ctx {
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        self.kube.client().await
    }
}

/// clap's errors, as one line and exit code 1; help and version as clap prints them.
fn clap_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        _ => {
            // clap's message, without its usage and help hint, on one line.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            eprintln!(
                "error: {}",
                message.strip_prefix("error: ").unwrap_or(&message)
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn tokio_main(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(work)
}
