//! A store behind TLS signed by a private CA (a second versitygw, HTTPS only): a location
//! naming the CA in `caCertRef` is Available and takes backups; one without it is
//! Unavailable with a message that says to set `caCertRef`.

use std::{process::Stdio, time::Duration};

use arca_api::{BackupPhase, BackupStorageLocation, LocationPhase};
use arca_e2e::{
    env, eventually, kubectl_apply,
    operator::{Operator, arca_binary, backup_done, phase_of_backup, settings},
};
use kube::Api;

/// A CA, and a certificate it signed for 127.0.0.1 and localhost: (CA PEM, cert PEM, key PEM).
fn private_ca() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Arca test CA");
    let ca = ca.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// versitygw serving HTTPS only, with a bucket `tls-bucket`; stopped when dropped.
struct TlsStore {
    _process: tokio::process::Child,
    endpoint: String,
    ca_pem: String,
}

async fn start_tls_store(env: &arca_e2e::TestEnv, name: &str) -> TlsStore {
    let dir = env.env.dir.join(format!("tls-{name}"));
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("tls-bucket")).expect("bucket folder");
    std::fs::create_dir_all(dir.join("meta")).expect("metadata folder");
    let (ca_pem, cert, key) = private_ca();
    std::fs::write(dir.join("cert.pem"), cert).expect("cert");
    std::fs::write(dir.join("key.pem"), key).expect("key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = std::fs::File::create(dir.join("versitygw.log")).expect("log");
    let process = tokio::process::Command::new(env.env.bin.join("versitygw"))
        .args(["--access", &env.env.s3.access_key_id])
        .args(["--secret", &env.env.s3.secret_access_key])
        .args(["--port", &format!("127.0.0.1:{port}")])
        .arg("--cert")
        .arg(dir.join("cert.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .args(["--region", "us-east-1", "posix", "--sidecar"])
        .arg(dir.join("meta"))
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("versitygw starts");
    eventually(
        "the TLS store to listen",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    TlsStore {
        _process: process,
        endpoint: format!("https://127.0.0.1:{port}"),
        ca_pem,
    }
}

fn location(ns: &str, name: &str, endpoint: &str, ca: bool) -> String {
    let ca_ref = if ca {
        "\n    caCertRef: {name: store-ca, key: ca.crt}"
    } else {
        ""
    };
    format!(
        r#"
apiVersion: arca.dev/v1alpha1
kind: BackupStorageLocation
metadata: {{name: {name}, namespace: {ns}}}
spec:
  provider: aws
  default: {ca}
  objectStorage:
    bucket: tls-bucket
    prefix: {name}{ca_ref}
  config: {{region: us-east-1, s3Url: "{endpoint}", s3ForcePathStyle: "true"}}
  credential: {{name: store-credentials, key: cloud}}
  validationFrequency: 5s
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_through_ca_cert_ref_and_only_then() {
    let env = env();
    let client = env.client().await.expect("client");
    // The locations below are applied before the operator (which installs the CRDs) starts.
    arca_e2e::install_crds(&client)
        .await
        .expect("CRDs installed");
    let arca = env.namespace("arca").await.expect("namespace");
    let app = env.namespace("tlsapp").await.expect("namespace");
    let store = start_tls_store(env, &arca.name).await;
    let ns = &arca.name;
    let s3 = &env.env.s3;
    let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
    kubectl_apply(
        env,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: store-credentials, namespace: {ns}}}\nstringData:\n  cloud: |\n    [default]\n    aws_access_key_id={}\n    aws_secret_access_key={}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: store-ca, namespace: {ns}}}\nstringData:\n  ca.crt: |\n    {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {}}}\ndata: {{mode: tls}}\n",
            s3.access_key_id,
            s3.secret_access_key,
            indent(&store.ca_pem),
            app.name
        ),
    );
    kubectl_apply(env, &location(ns, "private", &store.endpoint, true));
    kubectl_apply(env, &location(ns, "untrusted", &store.endpoint, false));
    let operator = Operator::start(env, settings(ns)).await;
    let locations: Api<BackupStorageLocation> = Api::namespaced(client.clone(), ns);
    let phase_of = |name: &'static str| {
        let locations = locations.clone();
        async move {
            let status = locations.get(name).await.ok()?.status?;
            Some((status.phase?, status.message.unwrap_or_default()))
        }
    };
    eventually(
        "the location with caCertRef to be Available",
        Duration::from_secs(60),
        || async {
            let (phase, _) = phase_of("private").await?;
            (phase == LocationPhase::Available).then_some(())
        },
    )
    .await;
    let message = eventually(
        "the location without the CA to be Unavailable",
        Duration::from_secs(60),
        || async {
            let (phase, message) = phase_of("untrusted").await?;
            (phase == LocationPhase::Unavailable).then_some(message)
        },
    )
    .await;
    assert!(
        message.contains("TLS") && message.contains("caCertRef"),
        "the reason and the fix: {message}"
    );

    kubectl_apply(
        env,
        &format!(
            "apiVersion: arca.dev/v1alpha1\nkind: Backup\nmetadata: {{name: over-tls, namespace: {ns}}}\nspec: {{includedNamespaces: [{}], storageLocation: private}}\n",
            app.name
        ),
    );
    let backup = backup_done(&client, ns, "over-tls", Duration::from_secs(60)).await;
    assert_eq!(
        phase_of_backup(&backup),
        BackupPhase::Completed,
        "{:?}",
        backup.status
    );
    let written = env.env.dir.join(format!(
        "tls-{ns}/data/tls-bucket/private/backups/over-tls/backup.json"
    ));
    assert!(
        written.is_file(),
        "backup.json is in the TLS store: {}",
        written.display()
    );

    // The CLI reads the log through a short-lived URL to the same store: it needs the CA too.
    let cli = |extra: &[&str]| {
        std::process::Command::new(arca_binary())
            .arg(format!("--kubeconfig={}", env.env.kubeconfig.display()))
            .args(["-n", ns, "backup", "logs", "over-tls"])
            .args(extra)
            .output()
            .expect("arca runs")
    };
    let refused = cli(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--cacert"), "the fix is named: {stderr}");
    let ca_file = env.env.dir.join(format!("tls-{ns}/ca.pem"));
    std::fs::write(&ca_file, &store.ca_pem).expect("CA file");
    let read = cli(&["--cacert", ca_file.to_str().expect("path")]);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(String::from_utf8_lossy(&read.stdout).contains("wrote"));
    operator.stop().await;
}
