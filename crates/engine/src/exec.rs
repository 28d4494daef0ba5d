//! Running a command in a pod's container through the apiserver's exec (websocket).

use std::time::Duration;

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Status};
use kube::{Api, api::AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt};

/// At most this much of each of stdout and stderr is kept; the rest is read and dropped.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// The first [`OUTPUT_LIMIT`] bytes of stdout.
    pub stdout: Vec<u8>,
    /// The first [`OUTPUT_LIMIT`] bytes of stderr.
    pub stderr: Vec<u8>,
    /// Whether output beyond the limit was dropped.
    pub truncated: bool,
    /// How it ended.
    pub exit: ExitStatus,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (0 is success).
    Code(i32),
    /// The runtime reported a failure without an exit code (no such container, the
    /// command could not start...).
    Failed(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, Self::Code(0))
    }
}

/// Why a command could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec in pod {namespace}/{pod}: {source}")]
    Connect {
        namespace: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the command in pod {namespace}/{pod} did not finish within {timeout:?} and was cut off"
    )]
    Timeout {
        namespace: String,
        pod: String,
        timeout: Duration,
    },
}

/// Runs `command` (no shell) in `container` of `namespace/pod`, waiting at most `timeout`.
pub async fn run_in_pod(
    pods: &Api<Pod>,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let mut params = AttachParams::default()
        .stdout(true)
        .stderr(true)
        .stdin(false);
    if let Some(container) = container {
        params = params.container(container);
    }
    let work = async {
        let mut process = pods
            .exec(pod, command.to_vec(), &params)
            .await
            .map_err(|source| ExecError::Connect {
                namespace: namespace.into(),
                pod: pod.into(),
                source,
            })?;
        let status = process.take_status();
        let (stdout, stderr) = (process.stdout(), process.stderr());
        let ((stdout, cut_out), (stderr, cut_err)) =
            tokio::join!(read_bounded(stdout), read_bounded(stderr));
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        let _ = process.join().await;
        Ok(ExecOutput {
            stdout,
            stderr,
            truncated: cut_out || cut_err,
            exit: exit_status(status.as_ref()),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(ExecError::Timeout {
                namespace: namespace.into(),
                pod: pod.into(),
                timeout,
            })
        })
}

async fn read_bounded(stream: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, bool) {
    let Some(mut stream) = stream else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}

/// Reads the exit code from the status the exec stream ends with.
///
/// A kubelet reports a non-zero exit as reason `NonZeroExitCode` with an `ExitCode` cause.
/// kwok (the test environment's node) reports it as a failure whose message ends in
/// `exit status N`; both are understood.
pub fn exit_status(status: Option<&Status>) -> ExitStatus {
    let Some(status) = status else {
        // Both kubelet and kwok end every exec with a status, success included.
        return ExitStatus::Failed("the exec stream ended without an exit status".into());
    };
    if status.status.as_deref() == Some("Success") {
        return ExitStatus::Code(0);
    }
    let from_cause = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.trim().parse().ok());
    if let Some(code) = from_cause {
        return ExitStatus::Code(code);
    }
    let message = status.message.clone().unwrap_or_default();
    let from_message = message
        .rfind("exit status ")
        .map(|at| &message[at + "exit status ".len()..])
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        });
    match from_message {
        Some(code) => ExitStatus::Code(code),
        None => ExitStatus::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).expect("a valid Status")
    }

    #[test]
    fn success_is_zero() {
        let s = status(serde_json::json!({"status": "Success", "metadata": {}}));
        assert_eq!(exit_status(Some(&s)), ExitStatus::Code(0));
    }

    #[test]
    fn kubelet_non_zero_exit_code() {
        let s = status(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode", "metadata": {},
            "message": "command terminated with non-zero exit code: error executing command [false], exit code 7",
            "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}
        }));
        assert_eq!(exit_status(Some(&s)), ExitStatus::Code(7));
    }

    #[test]
    fn kwok_exit_in_message() {
        let s = status(serde_json::json!({
            "status": "Failure", "reason": "InternalError", "metadata": {},
            "message": "Internal error occurred: error executing command in container: cmd wait: sh -c exit 3: exit status 3"
        }));
        assert_eq!(exit_status(Some(&s)), ExitStatus::Code(3));
    }

    #[test]
    fn failure_without_code_keeps_the_message() {
        let s = status(serde_json::json!({
            "status": "Failure", "metadata": {},
            "message": "container \"nope\" not found in pod"
        }));
        assert_eq!(
            exit_status(Some(&s)),
            ExitStatus::Failed("container \"nope\" not found in pod".into())
        );
    }
}
