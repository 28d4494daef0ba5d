//! restic (the Debian package) on its own repository (format 2) in the same bucket, with
//! its own cache, under GNU time: `backup` twice, then `restore` of the first snapshot.

use std::{ffi::OsStr, path::Path};

use super::{
    Ctx,
    measure::{Phase, fresh_dir, timed},
};

/// The restic contestant.
#[derive(Debug)]
pub(super) struct Restic;

impl Restic {
    /// `restic version`'s first line.
    pub async fn version() -> anyhow::Result<String> {
        let out = tokio::process::Command::new("restic")
            .arg("version")
            .output()
            .await
            .map_err(|e| anyhow::anyhow!("running restic (Debian package `restic`): {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// One round: a fresh repository under `bench-restic-r<round>/` and a fresh cache.
    pub async fn round(&self, ctx: &Ctx<'_>, round: usize) -> anyhow::Result<[Phase; 3]> {
        let prefix = format!("bench-restic-r{round}/");
        let dir = fresh_dir(ctx.work.join(format!("restic-r{round}")))?;
        let repo = Repo {
            url: format!(
                "s3:{}/{}/{}",
                ctx.env.s3.endpoint,
                ctx.env.s3.bucket,
                prefix.trim_end_matches('/')
            ),
            dir: &dir,
            ctx,
        };
        // The repository is made within the first backup's time, as Arca's first backup
        // makes its repository.
        let init = ["init", "--repository-version", "2"];
        let source = ctx.data.home.display().to_string();
        let backup = ["backup", "--json", "--host", "bench", &source];

        let (mut first, summary) = repo.timed(&[&init, &backup]).await?;
        first.uploaded = Some(ctx.bucket.bytes(std::slice::from_ref(&prefix)).await?);
        first.reported = summary["data_added"].as_u64();
        let snapshot = summary["snapshot_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("restic's summary names no snapshot: {summary}"))?
            .to_string();

        let (mut unchanged, summary) = repo.timed(&[&backup]).await?;
        unchanged.uploaded = Some(
            ctx.bucket.bytes(std::slice::from_ref(&prefix)).await? - first.uploaded.unwrap_or(0),
        );
        unchanged.reported = summary["data_added"].as_u64();

        let fs = ctx.restore_fs(&format!("restic-r{round}-fs"))?;
        let target = fs
            .as_ref()
            .map_or(dir.as_path(), |f| f.path())
            .join("restored");
        let target_arg = target.display().to_string();
        let (restore, _) = repo
            .timed(&[&["restore", &snapshot, "--target", &target_arg]])
            .await?;
        // restic restores the snapshot's absolute path under the target.
        let restored = target.join(ctx.data.home.strip_prefix("/")?);
        ctx.data.verify(&restored, "restic")?;
        if let Some(fs) = fs {
            fs.remove()?;
        }

        std::fs::remove_dir_all(&dir)?;
        ctx.bucket.remove(&prefix).await?;
        Ok([first, unchanged, restore])
    }
}

/// One round's repository.
struct Repo<'a> {
    url: String,
    dir: &'a Path,
    ctx: &'a Ctx<'a>,
}

impl Repo<'_> {
    /// `restic <args>` of each step on this repository, one after another under GNU time,
    /// as one phase; the JSON summary line of the last step's backup (Null otherwise).
    async fn timed(&self, steps: &[&[&str]]) -> anyhow::Result<(Phase, serde_json::Value)> {
        let (phase, out) =
            super::measure::timed_steps("restic", self.ctx.s3_pid, steps, |args| async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.exec(&args).await
            })
            .await?;
        let summary = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .unwrap_or_default();
        Ok((phase, summary))
    }

    async fn exec(
        &self,
        args: &[&str],
    ) -> anyhow::Result<(std::process::Output, super::measure::Usage)> {
        let s3 = &self.ctx.env.s3;
        let cache = self.dir.join("cache");
        let region = format!("s3.region={}", s3.region);
        let mut all: Vec<&OsStr> = vec![
            OsStr::new("-r"),
            OsStr::new(&self.url),
            OsStr::new("--cache-dir"),
            cache.as_os_str(),
            OsStr::new("-o"),
            OsStr::new(&region),
        ];
        all.extend(args.iter().map(OsStr::new));
        timed(
            "restic",
            &all,
            &[
                ("AWS_ACCESS_KEY_ID", &s3.access_key_id),
                ("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key),
                ("RESTIC_PASSWORD", "bench"),
            ],
            &self.dir.join("usage"),
        )
        .await
    }
}
