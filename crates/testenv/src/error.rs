use std::path::PathBuf;

/// Why an environment could not be started, reached or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TestenvError {
    #[error("`{program}` was not found: {hint}")]
    Missing { program: String, hint: String },
    #[error(
        "building the test components failed (exit {code:?}); the build log is above. Re-run `hack/testenv/build.sh` to see it alone"
    )]
    Build { code: Option<i32> },
    #[error("`{command}` failed (exit {code:?}): {output}")]
    Command {
        command: String,
        code: Option<i32>,
        output: String,
    },
    #[error(
        "environment {name:?} is already up in {dir}: use it (ARCA_TESTENV={name}) or stop it with `make testenv-down NAME={name}`"
    )]
    AlreadyUp { name: String, dir: PathBuf },
    #[error("no environment {name:?} in {dir}: start it with `make testenv-up NAME={name}`")]
    NotUp { name: String, dir: PathBuf },
    #[error("{what} did not become ready within {seconds}s; its log is {log}")]
    Timeout {
        what: String,
        seconds: u64,
        log: PathBuf,
    },
    #[error("{what}. What the components logged last:\n{evidence}")]
    ComponentFailed { what: String, evidence: String },
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the test cluster: {0}")]
    Kube(#[from] kube::Error),
    #[error("loading the kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("building a test object: {0}")]
    Json(#[from] serde_json::Error),
    #[error("talking to the test S3 server: {0}")]
    S3(String),
    #[error("bad environment file {path}: {message}")]
    BadFile { path: PathBuf, message: String },
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TestenvError {
    let path = path.into();
    move |source| TestenvError::Io { path, source }
}
