//! The plain `restic` CLI on Arca's volume repositories in the test environment's bucket, with
//! the passwords the operator's Secret gives.

use std::time::Duration;

use arca_engine::protocol::{
    REPOSITORY_PASSWORD_KEY, REPOSITORY_SECRET, RepositoryId, RepositoryPassword,
    derive_repository_password,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::{TestEnv, eventually};

/// The installation's secret the operator made (the shared password of repositories made
/// before each had its own).
pub async fn shared_password(client: &kube::Client, ns: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = eventually(
        "the operator to make its repository Secret",
        Duration::from_secs(60),
        || async { secrets.get_opt(REPOSITORY_SECRET).await.ok()? },
    )
    .await;
    let bytes = secret
        .data
        .and_then(|d| d.get(REPOSITORY_PASSWORD_KEY).cloned())
        .expect("password key");
    String::from_utf8(bytes.0).expect("utf-8")
}

/// The own password of `repository`, derived from the operator's Secret in `arca_ns`.
pub async fn own_password(
    client: &kube::Client,
    arca_ns: &str,
    repository: &RepositoryId,
) -> String {
    let shared = RepositoryPassword::new(shared_password(client, arca_ns).await);
    derive_repository_password(&shared, repository)
        .reveal()
        .to_string()
}

/// The plain restic CLI on the repository of `volumes_of` under `prefix`.
pub fn restic(
    env: &TestEnv,
    prefix: &str,
    volumes_of: &str,
    password: &str,
    args: &[&str],
) -> (bool, String) {
    let s3 = &env.env.s3;
    let repo = format!(
        "s3:{}/{}/{prefix}/volumes/{volumes_of}",
        s3.endpoint, s3.bucket
    );
    let out = std::process::Command::new("restic")
        .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key)
        .env("RESTIC_PASSWORD", password)
        .args(["-r", &repo, "--no-cache", "-o"])
        .arg(format!("s3.region={}", s3.region))
        .args(args)
        .output()
        .expect("restic runs (Debian package `restic`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
