//! The log of one backup or restore, uploaded next to its data (`logs.jsonl.zst`) so a user
//! can read it without access to the operator's pods. Lines are also sent to `tracing`.
//! Only names and counts are logged: never object contents or Secret data.

use arca_store::{ObjectStore, StoreError, archive::JsonlWriter};
use serde::Serialize;
use tokio::{sync::mpsc, task::JoinHandle};

const BUFFERED_LINES: usize = 4096;

#[derive(Debug, Serialize)]
struct Line {
    time: String,
    level: &'static str,
    message: String,
}

/// A handle to log into; clone it freely.
#[derive(Clone, Debug)]
pub struct RunLog {
    tx: mpsc::Sender<Line>,
    run: String,
}

/// The task that writes the log; [`RunLogWriter::finish`] uploads it.
#[derive(Debug)]
pub struct RunLogWriter {
    task: JoinHandle<Result<u64, StoreError>>,
}

impl RunLog {
    /// Starts a log streamed to `key`.
    pub async fn create(
        store: &dyn ObjectStore,
        key: &str,
        run: &str,
    ) -> Result<(Self, RunLogWriter), StoreError> {
        let mut writer = JsonlWriter::create(store, key).await?;
        let (tx, mut rx) = mpsc::channel::<Line>(BUFFERED_LINES);
        let task = tokio::spawn(async move {
            let mut failure = None;
            while let Some(line) = rx.recv().await {
                if failure.is_none()
                    && let Err(e) = writer.push(&line).await
                {
                    failure = Some(e);
                }
            }
            match failure {
                Some(e) => {
                    writer.abort().await;
                    Err(e)
                }
                None => writer.finish().await.map(|(lines, _, _)| lines),
            }
        });
        Ok((
            Self {
                tx,
                run: run.to_string(),
            },
            RunLogWriter { task },
        ))
    }

    /// A log that goes to `tracing` only (tests, dry tools).
    pub fn detached(run: &str) -> Self {
        let (tx, _rx) = mpsc::channel(1);
        Self {
            tx,
            run: run.into(),
        }
    }

    fn push(&self, level: &'static str, message: String) {
        // A full buffer drops the line from the uploaded log rather than slow the run.
        let _ = self.tx.try_send(Line {
            time: jiff::Timestamp::now().to_string(),
            level,
            message,
        });
    }

    pub fn info(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(run = %self.run, "{message}");
        self.push("info", message);
    }

    pub fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!(run = %self.run, "{message}");
        self.push("warning", message);
    }

    pub fn error(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::error!(run = %self.run, "{message}");
        self.push("error", message);
    }
}

impl RunLogWriter {
    /// Uploads the log once every [`RunLog`] handle is dropped; returns the line count.
    pub async fn finish(self) -> Result<u64, StoreError> {
        self.task
            .await
            .map_err(|e| StoreError::Config(format!("log writer task failed: {e}")))?
    }
}
