//! `arca volume password`: what an admin needs to read a namespace's volume repository with
//! the plain `restic` CLI.

use arca_engine::protocol::{RepositoryId, derive_repository_password};
use arca_runtime::repository::read_password;

use crate::{Ctx, flags::object_name};

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Print the password of a namespace's volume repository, for `restic`
    /// (`RESTIC_PASSWORD_COMMAND="arca volume password shop"`). Reads Secret
    /// arca-repo-credentials in Arca's namespace (-n) with your kubeconfig.
    Password(PasswordArgs),
}

/// Which repository: a namespace's (`volumes/<ns>/`), in its tenant folder
/// (`tenants/<ns>/volumes/<ns>/`), or as `volumes.json` names it.
#[derive(Debug, clap::Args)]
pub struct PasswordArgs {
    /// The namespace whose pod volumes the repository holds.
    #[arg(value_parser = object_name, required_unless_present = "repository")]
    pub volume_namespace: Option<String>,
    /// The repository is the namespace's tenant folder of the operator's location
    /// (`tenants/<ns>/volumes/<ns>/`: backups made in that namespace to a location of Arca's
    /// namespace).
    #[arg(long, requires = "volume_namespace")]
    pub tenant_folder: bool,
    /// The repository's root relative to the location's prefix, as the `repository` field of
    /// `volumes.json` spells it (`volumes/shop/`, `tenants/t1/volumes/t1/`).
    #[arg(long, conflicts_with_all = ["volume_namespace", "tenant_folder"], value_parser = repository_id)]
    pub repository: Option<RepositoryId>,
}

impl PasswordArgs {
    /// The repository these arguments name.
    fn repository(&self) -> anyhow::Result<RepositoryId> {
        match (&self.repository, &self.volume_namespace) {
            (Some(id), _) => Ok(id.clone()),
            (None, Some(ns)) if self.tenant_folder => Ok(RepositoryId::in_tenant_folder(ns)),
            (None, Some(ns)) => Ok(RepositoryId::new(ns)),
            (None, None) => anyhow::bail!("name the namespace, or the repository (--repository)"),
        }
    }
}

/// `--repository`: only the two shapes Arca writes.
fn repository_id(text: &str) -> Result<RepositoryId, String> {
    RepositoryId::parse(text).map_err(|_| {
        format!(
            "{text:?} is not a volume repository: volumes/<namespace>/, or tenants/<namespace>/volumes/<namespace>/"
        )
    })
}

/// Runs `arca volume …`.
pub async fn run(ctx: &Ctx, command: VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Password(args) => {
            let id = args.repository()?;
            let client = ctx.client().await?;
            let secret = read_password(&client, &ctx.namespace).await?;
            let own = derive_repository_password(&secret, &id);
            // Only the password on stdout, for RESTIC_PASSWORD_COMMAND; which repository on
            // stderr.
            eprintln!(
                "the password of repository {id} (in the location's bucket, under its prefix)"
            );
            println!("{}", own.reveal());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Result<PasswordArgs, clap::Error> {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: PasswordArgs,
        }
        Cli::try_parse_from(std::iter::once("password").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn the_arguments_name_one_repository() {
        let root = |argv: &[&str]| {
            args(argv)
                .expect("valid")
                .repository()
                .expect("a repository")
                .to_string()
        };
        assert_eq!(root(&["shop"]), "volumes/shop/");
        assert_eq!(root(&["t1", "--tenant-folder"]), "tenants/t1/volumes/t1/");
        assert_eq!(
            root(&["--repository", "tenants/t1/volumes/t1/"]),
            "tenants/t1/volumes/t1/"
        );
        for bad in [
            &[][..],
            &["--tenant-folder"],
            &["shop", "--repository", "volumes/shop/"],
            &["--repository", "volumes/../backups/"],
            &["--repository", "tenants/t1/volumes/t2/"],
            &["Shop"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
