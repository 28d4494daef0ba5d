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
        Cmd::Up { name } => {
            let started = std::time::Instant::now();
            let env = arca_testenv::Environment::up(&name).await?;
            println!(
                "environment {name} is up ({:.0}s)\n  kubeconfig: {}\n  s3:         {} (bucket {}), settings in {}\n  stop it:    make testenv-down NAME={name}",
                started.elapsed().as_secs_f64(),
                env.kubeconfig.display(),
                env.s3.endpoint,
                env.s3.bucket,
                env.dir.join("s3.env").display()
            );
        }
        Cmd::Down { name } => {
            arca_testenv::Environment::down(&name)?;
            println!("environment {name} is down");
        }
    }
    Ok(())
}
