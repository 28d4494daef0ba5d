//! kopia (built from its Go module by `hack/testenv/build.sh`, the engine Velero uses) on
//! its own repository in the same bucket, with its own config file and cache, under GNU
//! time: `snapshot create` twice, then `snapshot restore` of the first snapshot.
//!
//! kopia's defaults, as Velero uses it: no compression policy is set. Two things differ
//! from the bare CLI, both as under Velero and neither slowing kopia: its maintenance does
//! not run inside a backup (Velero runs it as a job of its own; the CLI would run a full
//! maintenance right after the first snapshot), and it keeps no debug log file.

use std::{ffi::OsStr, path::Path};

use super::{
    Ctx,
    measure::{Phase, Usage, fresh_dir, timed},
};

/// The kopia contestant.
#[derive(Debug)]
pub(super) struct Kopia;

impl Kopia {
    /// `kopia --version`'s first word, and where the binary is.
    pub async fn version(env: &arca_testenv::Environment) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(env.bin.join("kopia"))
            .arg("--version")
            .output()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "running {} (built by hack/testenv/build.sh): {e}",
                    env.bin.join("kopia").display()
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(format!(
            "kopia {}",
            text.split_whitespace()
                .next()
                .unwrap_or("(unknown version)")
        ))
    }

    /// One round: a fresh repository under `bench-kopia-r<round>/`, fresh config and cache.
    pub async fn round(&self, ctx: &Ctx<'_>, round: usize) -> anyhow::Result<[Phase; 3]> {
        let prefix = format!("bench-kopia-r{round}/");
        let dir = fresh_dir(ctx.work.join(format!("kopia-r{round}")))?;
        let repo = Repo { dir: &dir, ctx };
        let s3 = &ctx.env.s3;
        let endpoint = s3
            .endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let cache = dir.join("cache").display().to_string();
        // The repository is made within the first backup's time, as Arca's first backup
        // makes its repository (and Velero's first backup of a namespace, its kopia one).
        let create = [
            "repository",
            "create",
            "s3",
            "--bucket",
            &s3.bucket,
            "--endpoint",
            endpoint,
            "--disable-tls",
            "--access-key",
            &s3.access_key_id,
            "--secret-access-key",
            &s3.secret_access_key,
            "--region",
            &s3.region,
            "--prefix",
            &prefix,
            "--cache-directory",
            &cache,
            "--no-check-for-updates",
        ];
        let maintenance = [
            "maintenance",
            "set",
            "--enable-quick=false",
            "--enable-full=false",
        ];
        let source = ctx.data.home.display().to_string();
        let backup = ["snapshot", "create", "--json", &source];

        let (mut first, out) = repo.timed(&[&create, &maintenance, &backup]).await?;
        first.uploaded = Some(ctx.bucket.bytes(std::slice::from_ref(&prefix)).await?);
        first.reported = reported_upload(&out.stderr);
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let snapshot = manifest["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("kopia's snapshot has no id: {manifest}"))?
            .to_string();

        let (mut unchanged, out) = repo.timed(&[&backup]).await?;
        unchanged.uploaded = Some(
            ctx.bucket.bytes(std::slice::from_ref(&prefix)).await? - first.uploaded.unwrap_or(0),
        );
        unchanged.reported = reported_upload(&out.stderr);

        let fs = ctx.restore_fs(&format!("kopia-r{round}-fs"))?;
        let target = fs
            .as_ref()
            .map_or(dir.as_path(), |f| f.path())
            .join("restored");
        let target_arg = target.display().to_string();
        let (restore, _) = repo
            .timed(&[&["snapshot", "restore", &snapshot, &target_arg]])
            .await?;
        ctx.data.verify(&target, "kopia")?;
        if let Some(fs) = fs {
            fs.remove()?;
        }

        std::fs::remove_dir_all(&dir)?;
        ctx.bucket.remove(&prefix).await?;
        Ok([first, unchanged, restore])
    }
}

/// The bytes in kopia's last progress line (`uploaded 25.3 MB`, decimal units).
fn reported_upload(stderr: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(stderr);
    let at = text.rfind("uploaded ")?;
    let mut words = text[at + "uploaded ".len()..].split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    let unit = words
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_alphabetic());
    let scale = match unit {
        "B" => 1e0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    Some((value * scale) as u64)
}

/// One round's repository: its config file, log and password.
struct Repo<'a> {
    dir: &'a Path,
    ctx: &'a Ctx<'a>,
}

impl Repo<'_> {
    /// `kopia <args>` of each step, one after another under GNU time, as one phase: its
    /// time, their CPU seconds, the highest peak; the last step's output.
    async fn timed(&self, steps: &[&[&str]]) -> anyhow::Result<(Phase, std::process::Output)> {
        let (phase, out) =
            super::measure::timed_steps("kopia", self.ctx.s3_pid, steps, |args| async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.exec(&args).await
            })
            .await?;
        Ok((phase, out))
    }

    async fn exec(&self, args: &[&str]) -> anyhow::Result<(std::process::Output, Usage)> {
        let config = self.dir.join("repository.config");
        let mut all: Vec<&OsStr> = vec![
            OsStr::new("--config-file"),
            config.as_os_str(),
            OsStr::new("--disable-file-logging"),
        ];
        all.extend(args.iter().map(OsStr::new));
        timed(
            self.ctx.env.bin.join("kopia"),
            &all,
            &[
                ("KOPIA_PASSWORD", "bench-password"),
                ("KOPIA_CHECK_FOR_UPDATES", "false"),
            ],
            &self.dir.join("usage"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::reported_upload;

    #[test]
    fn kopia_s_progress_line() {
        let line =
            b"/ 0 hashing, 4 hashed (30 MB), 0 cached (0 B), uploaded 25.5 MB, estimating...";
        assert_eq!(reported_upload(line), Some(25_500_000));
        assert_eq!(reported_upload(b"uploaded 0 B, estimating"), Some(0));
        assert_eq!(reported_upload(b"nothing"), None);
    }
}
