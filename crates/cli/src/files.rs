//! Reading a backup's or restore's files without storage credentials: a DownloadRequest
//! asks the operator for a short-lived URL, which is streamed from here.

use std::{io::Write, time::Duration};

use anyhow::Context as _;
use arca_api::{
    Backup, BackupStorageLocation, DownloadRequest, DownloadRequestPhase, DownloadRequestSpec,
    DownloadTarget, DownloadTargetKind, Restore,
};
use arca_store::{KeyRing, Layout, protect::DecryptingSink};
use http_body_util::BodyExt;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};

use crate::Ctx;

/// Asks for the URL of one file; waits up to 60s for the operator's answer.
async fn url(ctx: &Ctx, kind: DownloadTargetKind, name: &str) -> anyhow::Result<String> {
    let api: Api<DownloadRequest> = Api::namespaced(ctx.client().await?, &ctx.namespace);
    let mut request = DownloadRequest::new(
        "",
        DownloadRequestSpec {
            target: DownloadTarget {
                kind,
                name: name.into(),
            },
        },
    );
    request.metadata.name = None;
    request.metadata.generate_name = Some(format!("{}-", &name[..name.len().min(50)]));
    let created = api
        .create(&PostParams::default(), &request)
        .await
        .context("creating a DownloadRequest")?;
    let request_name = created.metadata.name.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let current = api.get(&request_name).await?;
        let status = current.status.unwrap_or_default();
        if status.phase == Some(DownloadRequestPhase::Processed) {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = api.delete(&request_name, &DeleteParams::default()).await;
            anyhow::bail!(
                "the operator did not answer DownloadRequest {request_name} within 60s: is it running in namespace {}?",
                ctx.namespace
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let _ = api.delete(&request_name, &DeleteParams::default()).await;
    answer.download_url.ok_or_else(|| {
        anyhow::anyhow!(
            "{}",
            answer.message.unwrap_or_else(|| "no URL was given".into())
        )
    })
}

/// The system's CA certificates, plus the store's own CA from `--cacert`.
fn tls_config(cacert: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = cacert {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("--cacert: reading {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("--cacert: {} is not PEM", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("--cacert: a certificate in {}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("--cacert: {} holds no certificate", path.display());
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS settings")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Streams the file at `url` into `sink`, chunk by chunk.
async fn stream(ctx: &Ctx, url: &str, sink: &mut dyn Write) -> anyhow::Result<u64> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ctx.cacert.as_deref())?)
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(https);
    let uri: http::Uri = url.parse().context("the download URL")?;
    let response = client.get(uri).await.map_err(|e| {
        let detail = format!("{:?}", e).to_lowercase();
        if detail.contains("certificate") || detail.contains("unknownissuer") {
            anyhow::anyhow!(
                "downloading: the store's certificate is not trusted ({e}): if the store uses a private CA, pass its certificate with --cacert FILE"
            )
        } else {
            anyhow::Error::new(e).context("downloading")
        }
    })?;
    if !response.status().is_success() {
        anyhow::bail!("the store answered {} to the download", response.status());
    }
    let mut body = response.into_body();
    let mut written = 0;
    while let Some(frame) = body.frame().await {
        if let Some(chunk) = frame.context("reading the download")?.data_ref() {
            sink.write_all(chunk)?;
            written += chunk.len() as u64;
        }
    }
    sink.flush()?;
    Ok(written)
}

/// The key of a download's file, relative to the store its run wrote through (the cipher of
/// an encrypted file is bound to it).
fn object_key(kind: DownloadTargetKind, name: &str) -> String {
    match kind {
        DownloadTargetKind::BackupLog => Layout::backup_logs(name),
        DownloadTargetKind::BackupContents => Layout::backup_archive(name),
        DownloadTargetKind::BackupResults => Layout::backup_results(name),
        DownloadTargetKind::BackupIndex => Layout::backup_index(name),
        DownloadTargetKind::BackupVolumes => Layout::backup_volumes(name),
        DownloadTargetKind::BackupCsiSnapshots => Layout::backup_csi_snapshots(name),
        DownloadTargetKind::RestoreLog => Layout::restore_logs(name),
        DownloadTargetKind::RestoreResults => Layout::restore_results(name),
        DownloadTargetKind::RestoreItems => Layout::restore_items(name),
    }
}

/// The encryption keys of the location a download's file is in, when it has some and they
/// can be read with the user's own access (the Secret is in the location's namespace).
async fn location_keys(ctx: &Ctx, kind: DownloadTargetKind, name: &str) -> Option<KeyRing> {
    let client = ctx.client().await.ok()?;
    let backups: Api<Backup> = Api::namespaced(client.clone(), &ctx.namespace);
    let backup_name = match kind {
        DownloadTargetKind::BackupLog
        | DownloadTargetKind::BackupContents
        | DownloadTargetKind::BackupResults
        | DownloadTargetKind::BackupIndex
        | DownloadTargetKind::BackupVolumes
        | DownloadTargetKind::BackupCsiSnapshots => name.to_string(),
        DownloadTargetKind::RestoreLog
        | DownloadTargetKind::RestoreResults
        | DownloadTargetKind::RestoreItems => {
            let restores: Api<Restore> = Api::namespaced(client.clone(), &ctx.namespace);
            restores.get_opt(name).await.ok()??.spec.backup_name?
        }
    };
    let location_name = backups.get_opt(&backup_name).await.ok()??.location_name()?;
    let locations: Api<BackupStorageLocation> = Api::namespaced(client.clone(), &ctx.namespace);
    let location = locations.get_opt(&location_name).await.ok()??;
    match arca_runtime::keys::location_keys(&client, &location).await {
        Ok(ring) => ring,
        Err(e) => {
            eprintln!("warning: {e}");
            None
        }
    }
}

/// Longest line of a downloaded JSON Lines file (as the operator's own readers allow).
const MAX_LINE: usize = 16 << 20;
/// Largest JSON file read whole (results, volumes).
const MAX_JSON: usize = 64 << 20;

/// Calls `each` with every line (without its newline) of a zstd JSON Lines file (a log, an
/// index), decrypted when the location encrypts, as the bytes arrive: nothing is held but
/// the current line.
pub async fn for_each_line(
    ctx: &Ctx,
    kind: DownloadTargetKind,
    name: &str,
    each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let url = url(ctx, kind, name).await?;
    let keys = location_keys(ctx, kind, name).await;
    let lines = Lines {
        pending: Vec::new(),
        each,
    };
    let decoder = zstd::stream::write::Decoder::new(lines)?;
    let mut sink = DecryptingSink::new(keys, &object_key(kind, name), decoder);
    stream(ctx, &url, &mut sink).await?;
    let mut decoder = sink.finish()?;
    decoder.flush()?;
    decoder.into_inner().finish()?;
    Ok(())
}

/// Prints a run's log (`logs.jsonl.zst`) as `time level message` lines.
pub async fn print_log(ctx: &Ctx, kind: DownloadTargetKind, name: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for_each_line(ctx, kind, name, |line| {
        let text = String::from_utf8_lossy(line);
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => writeln!(
                out,
                "{} {:<7} {}",
                v["time"].as_str().unwrap_or(""),
                v["level"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or("")
            ),
            Err(_) => writeln!(out, "{text}"),
        }
    })
    .await
}

/// Saves a file to `path`, as stored (compressed files stay compressed).
pub async fn save(
    ctx: &Ctx,
    kind: DownloadTargetKind,
    name: &str,
    path: &std::path::Path,
) -> anyhow::Result<u64> {
    let url = url(ctx, kind, name).await?;
    let keys = location_keys(ctx, kind, name).await;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut sink = DecryptingSink::new(keys, &object_key(kind, name), file);
    let written = stream(ctx, &url, &mut sink).await?;
    sink.finish()?;
    Ok(written)
}

/// Reads a JSON file (results, volumes) of at most [`MAX_JSON`] bytes.
pub async fn print_json(
    ctx: &Ctx,
    kind: DownloadTargetKind,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let url = url(ctx, kind, name).await?;
    let keys = location_keys(ctx, kind, name).await;
    let mut sink = DecryptingSink::new(keys, &object_key(kind, name), Capped(Vec::new()));
    stream(ctx, &url, &mut sink).await?;
    let Capped(buffer) = sink.finish()?;
    serde_json::from_slice(&buffer).context("reading the file's JSON")
}

/// A buffer that refuses to grow past [`MAX_JSON`].
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_JSON {
            return Err(std::io::Error::other(format!(
                "the file is larger than {MAX_JSON} bytes: it is not a file Arca wrote"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands each complete line to `each` as bytes arrive; refuses a line over [`MAX_LINE`].
struct Lines<F> {
    pending: Vec<u8>,
    each: F,
}

impl<F: FnMut(&[u8]) -> std::io::Result<()>> Lines<F> {
    fn finish(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            (self.each)(&line)?;
        }
        Ok(())
    }
}

impl<F: FnMut(&[u8]) -> std::io::Result<()>> Write for Lines<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                (self.each)(&rest[..at])?;
            } else {
                self.pending.extend_from_slice(&rest[..at]);
                let line = std::mem::take(&mut self.pending);
                (self.each)(&line)?;
            }
            rest = &rest[at + 1..];
        }
        if self.pending.len() + rest.len() > MAX_LINE {
            return Err(std::io::Error::other(format!(
                "a line is longer than {MAX_LINE} bytes: the file is not one Arca wrote"
            )));
        }
        self.pending.extend_from_slice(rest);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_whole_whatever_the_chunks() {
        let mut seen = Vec::new();
        {
            let mut lines = Lines {
                pending: Vec::new(),
                each: |l: &[u8]| {
                    seen.push(String::from_utf8_lossy(l).to_string());
                    Ok(())
                },
            };
            for chunk in [&b"{\"a\":1}\n{\"b"[..], b"\":2}\n\n", b"{\"c\":3}"] {
                lines.write_all(chunk).expect("write");
            }
            lines.finish().expect("finish");
        }
        assert_eq!(seen, ["{\"a\":1}", "{\"b\":2}", "", "{\"c\":3}"]);
    }

    #[test]
    fn an_endless_line_or_json_is_refused() {
        let mut lines = Lines {
            pending: Vec::new(),
            each: |_: &[u8]| Ok(()),
        };
        let chunk = vec![b'x'; 1 << 20];
        let refused = (0..20).find_map(|_| lines.write_all(&chunk).err());
        assert!(
            refused.is_some_and(|e| e.to_string().contains("longer than")),
            "a 20 MiB line is refused"
        );
        let mut json = Capped(Vec::new());
        let refused = (0..70).find_map(|_| json.write_all(&chunk).err());
        assert!(refused.is_some_and(|e| e.to_string().contains("larger than")));
    }
}
