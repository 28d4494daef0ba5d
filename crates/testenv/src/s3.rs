//! The S3 side: versitygw with its posix backend, and a bucket.

use std::{
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
};

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};

use crate::{
    S3Settings, TestenvError,
    error::io,
    node::{NodeSlot, S3_PORT_IN_NODE},
};

/// A port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, TestenvError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("127.0.0.1:0"))?;
    let port = listener.local_addr().map_err(io("127.0.0.1:0"))?.port();
    Ok(port)
}

/// Starts versitygw, detached from the caller, and records its pid in
/// `pids/versitygw.pid`. Returns the settings to reach it.
/// Without a real node: on a free port of 127.0.0.1. With one: inside the node's network
/// namespace, on the node IP, where both this machine and the node's pods reach it.
pub(crate) fn start(
    dir: &Path,
    bin: &Path,
    node: Option<&NodeSlot>,
) -> Result<S3Settings, TestenvError> {
    let data = dir.join("s3data");
    std::fs::create_dir_all(&data).map_err(io(&data))?;
    // Object lock needs versioning, which versitygw keeps in a folder of its own: buckets
    // created without versioning (the default bucket) behave as before.
    let versions = dir.join("s3versions");
    std::fs::create_dir_all(&versions).map_err(io(&versions))?;
    let (listen, endpoint) = match node {
        Some(node) => (
            format!("{}:{S3_PORT_IN_NODE}", node.node_ip()),
            node.s3_endpoint(),
        ),
        None => {
            let port = free_port()?;
            (
                format!("127.0.0.1:{port}"),
                format!("http://127.0.0.1:{port}"),
            )
        }
    };
    let access = format!("arca{}", rand::random::<u32>());
    let secret = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let log_path = dir.join("logs/versitygw.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let log_err = log.try_clone().map_err(io(&log_path))?;
    let mut cmd = match node {
        Some(node) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &node.netns()])
                .arg(bin.join("versitygw"));
            cmd
        }
        None => Command::new(bin.join("versitygw")),
    };
    cmd.args(["--access", &access, "--secret", &secret])
        .args(["--port", &listen])
        .args(["--region", "us-east-1"])
        .arg("posix")
        .arg("--versioning-dir")
        .arg(&versions);
    if !supports_xattrs(&data) {
        // The posix backend keeps object metadata in extended attributes; without them
        // it keeps it in a sidecar folder.
        cmd.arg("--sidecar").arg(dir.join("s3meta"));
        std::fs::create_dir_all(dir.join("s3meta")).map_err(io(dir.join("s3meta")))?;
    }
    cmd.arg(&data)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Its own process group: an interrupt of the command that started it does not stop it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(io(bin.join("versitygw")))?;
    let pid_path = dir.join("pids/versitygw.pid");
    std::fs::write(&pid_path, child.id().to_string()).map_err(io(&pid_path))?;
    Ok(S3Settings {
        endpoint,
        access_key_id: access,
        secret_access_key: secret,
        region: "us-east-1".into(),
        bucket: "arca-test".into(),
    })
}

fn supports_xattrs(dir: &Path) -> bool {
    xattr::set(dir, "user.arca.probe", b"1").is_ok()
}

/// An S3 client for the test server: custom endpoint, path-style addressing.
pub fn client(s3: &S3Settings) -> aws_sdk_s3::Client {
    let creds = Credentials::new(
        &s3.access_key_id,
        &s3.secret_access_key,
        None,
        None,
        "arca-testenv",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(s3.region.clone()))
        .endpoint_url(&s3.endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The second bucket of every environment, created with object lock enabled (and so
/// versioning): for the immutable-backup tests. `ARCA_TEST_LOCKED_BUCKET` in `s3.env`.
pub const LOCKED_BUCKET: &str = "arca-test-locked";

/// Waits for the server to answer, then creates the bucket and the object-locked bucket
/// [`LOCKED_BUCKET`] (idempotent).
pub(crate) async fn create_bucket(s3: &S3Settings, log: &Path) -> Result<(), TestenvError> {
    let client = client(s3);
    let answers = || async { client.list_buckets().send().await.ok().map(|_| ()) };
    crate::cluster::wait_for("the S3 server (versitygw)", 30, log, answers).await?;
    make_bucket(&client, &s3.bucket, false).await?;
    make_bucket(&client, LOCKED_BUCKET, true).await
}

async fn make_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    object_lock: bool,
) -> Result<(), TestenvError> {
    match client
        .create_bucket()
        .bucket(bucket)
        .set_object_lock_enabled_for_bucket(object_lock.then_some(true))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let already = e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            });
            if already {
                Ok(())
            } else {
                Err(TestenvError::S3(format!(
                    "creating bucket {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )))
            }
        }
    }
}
