//! `arca crd`: the CRDs generated from the Rust types.

use std::{io::Write, path::PathBuf};

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct CrdArgs {
    /// Write one file per CRD into this folder (replacing the YAML files there) instead of
    /// printing them.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the Markdown CRD reference (docs/reference/crds.md) to this file instead.
    #[arg(long, conflicts_with = "dir")]
    reference: Option<PathBuf>,
}

pub fn run(args: &CrdArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.reference {
        return std::fs::write(path, arca_api::render_reference())
            .with_context(|| format!("writing {}", path.display()));
    }
    let crds = arca_api::render_crds().context("rendering the CRDs")?;
    match &args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            for (_, yaml) in &crds {
                writeln!(out, "---\n{}", yaml.trim_end())?;
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    std::fs::remove_file(&path)?;
                }
            }
            for (name, yaml) in &crds {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
