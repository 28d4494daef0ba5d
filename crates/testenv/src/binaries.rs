//! The components' binaries, built from Go modules by `hack/testenv/build.sh`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{TestenvError, workspace_root};

/// Builds what is missing (a no-op when the cache is warm) and returns the bin folder.
pub(crate) fn ensure_built() -> Result<PathBuf, TestenvError> {
    if which("go").is_none() {
        return Err(TestenvError::Missing {
            program: "go".into(),
            hint: "the test environment is built from Go modules. Install Go >= 1.26 \
                   (`apt-get install golang-go` or https://go.dev/dl) and retry"
                .into(),
        });
    }
    let bin = PathBuf::from(run_script("build.sh").map_err(|code| TestenvError::Build { code })?);
    for name in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kwok",
        "kwokctl",
        "versitygw",
    ] {
        if !bin.join(name).is_file() {
            return Err(TestenvError::Missing {
                program: bin.join(name).display().to_string(),
                hint: "the build reported success but left no binary: remove the cache \
                       folder and run hack/testenv/build.sh again"
                    .into(),
            });
        }
    }
    Ok(bin)
}

/// Makes the real node's images (pause, busybox) once, and returns their folder.
pub(crate) fn ensure_images() -> Result<PathBuf, TestenvError> {
    let images = run_script("images.sh").map_err(|code| TestenvError::Command {
        command: "bash hack/testenv/images.sh".into(),
        code,
        output: "see the lines above".into(),
    })?;
    Ok(PathBuf::from(images))
}

/// Runs `hack/testenv/<script>` (its errors on this process's stderr) and returns the last
/// line it printed, or its exit code when it failed (None: it could not run).
fn run_script(script: &str) -> Result<String, Option<i32>> {
    let path = workspace_root().join("hack/testenv").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|_| None)?;
    if !out.status.success() {
        return Err(out.status.code());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.lines().last().unwrap_or_default().trim().to_string())
}

/// The path of `program` on PATH, if any.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The pinned versions, read from `hack/testenv/versions.env` (the one place they live).
pub(crate) struct Versions {
    pub k8s: String,
    pub etcd: String,
    pub kwok: String,
    /// The real node's sandbox image (containerd's `sandbox_image`).
    pub pause_image: String,
    /// The real node's workload image (busybox).
    pub busybox_image: String,
}

pub(crate) fn versions() -> Versions {
    let text = std::fs::read_to_string(workspace_root().join("hack/testenv/versions.env"))
        .unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    Versions {
        k8s: get("K8S_VERSION"),
        etcd: get("ETCD_VERSION"),
        kwok: get("KWOK_VERSION"),
        pause_image: get("PAUSE_IMAGE"),
        busybox_image: get("BUSYBOX_IMAGE"),
    }
}
