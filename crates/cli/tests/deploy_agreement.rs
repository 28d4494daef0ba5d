//! deploy/ must agree with `arca install`: the rendered manifests equal its output, the Helm
//! chart equals what it generates, and `helm template` of the chart renders the same objects.
//! helm comes from the test environment's cache (hack/testenv/build.sh builds it).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn arca(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_arca"))
        .args(args)
        .output()
        .expect("arca runs");
    assert!(
        out.status.success(),
        "arca {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn helm() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("hack/testenv/build.sh"))
        .arg("--print-bin")
        .output()
        .expect("build.sh runs");
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("helm");
    assert!(
        bin.is_file(),
        "{} is missing: run hack/testenv/build.sh (make testenv-build) to build helm from its Go module",
        bin.display()
    );
    bin
}

/// The objects of a YAML stream, keyed `kind/namespace/name`, as JSON.
fn objects(yaml: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| v.is_object())
        .map(|v| {
            let key = format!(
                "{}/{}/{}",
                v["kind"].as_str().unwrap_or(""),
                v["metadata"]["namespace"].as_str().unwrap_or(""),
                v["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, v)
        })
        .collect()
}

#[test]
fn rendered_manifests_are_what_arca_install_applies() {
    let rendered = std::fs::read_to_string(root().join("deploy/rendered/arca.yaml"))
        .expect("deploy/rendered/arca.yaml");
    let fresh = arca(&["install", "--dry-run", "-o", "yaml", "-n", "arca-system"]);
    assert!(
        rendered == fresh,
        "deploy/rendered/arca.yaml differs from `arca install --dry-run -o yaml`: run `make deploy`"
    );
}

#[test]
fn the_chart_is_what_arca_install_generates() {
    let dir = tempfile::tempdir().expect("tempdir");
    arca(&[
        "install",
        "--helm-chart",
        dir.path().to_str().expect("path"),
    ]);
    let checked_in = root().join("deploy/helm/arca");
    let mut stale = Vec::new();
    for sub in ["Chart.yaml", "values.yaml", "templates", "crds"] {
        let fresh = dir.path().join(sub);
        let files: Vec<PathBuf> = if fresh.is_dir() {
            std::fs::read_dir(&fresh)
                .expect("dir")
                .filter_map(|e| e.ok().map(|e| PathBuf::from(sub).join(e.file_name())))
                .collect()
        } else {
            vec![PathBuf::from(sub)]
        };
        for file in files {
            let a = std::fs::read_to_string(dir.path().join(&file)).unwrap_or_default();
            let b = std::fs::read_to_string(checked_in.join(&file)).unwrap_or_default();
            if a != b {
                stale.push(file.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "deploy/helm/arca differs in {stale:?}: run `make deploy`"
    );
}

#[test]
fn helm_renders_what_arca_install_applies() {
    let helm = helm();
    let chart = root().join("deploy/helm/arca");
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials = "[default]\naws_access_key_id=AK\naws_secret_access_key=SK\n";
    let credentials_file = dir.path().join("credentials");
    std::fs::write(&credentials_file, credentials).expect("written");
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "replicas: 2\nnodeAgent: true\ndefaultServiceAccount: backup-runner\ntenantStorage: [\"https://s3.team.example:9443/team-a/\", \"https://s3.eu-west-1.amazonaws.com\", \"http://minio.storage:9000/tenants\"]\nlocation:\n  provider: aws\n  bucket: backups\n  prefix: cluster-a\n  config:\n    region: eu-west-1\n    s3Url: http://minio.storage:9000\n  credentials: {}\n",
            serde_json::to_string(credentials).expect("json")
        ),
    )
    .expect("values");
    let cases: [(&[&str], Vec<String>); 2] = [
        (&[], vec![]),
        (
            &[
                "--provider",
                "aws",
                "--bucket",
                "backups",
                "--prefix",
                "cluster-a",
                "--backup-location-config",
                "region=eu-west-1,s3Url=http://minio.storage:9000",
                "--replicas",
                "2",
                "--use-node-agent",
                "--default-service-account",
                "backup-runner",
                "--tenant-storage",
                "https://s3.team.example:9443/team-a/",
                "--tenant-storage",
                "https://s3.eu-west-1.amazonaws.com",
                "--tenant-storage",
                "http://minio.storage:9000/tenants",
            ],
            vec!["-f".into(), values.display().to_string()],
        ),
    ];
    for (install_flags, helm_flags) in cases {
        let mut args = vec!["install", "--dry-run", "-o", "yaml", "-n", "backup-system"];
        args.extend_from_slice(install_flags);
        let secret = format!("--secret-file={}", credentials_file.display());
        if !install_flags.is_empty() {
            args.push(&secret);
        }
        let expected = objects(&arca(&args));
        let out = Command::new(&helm)
            .args([
                "template",
                "arca",
                chart.to_str().expect("path"),
                "--namespace",
                "backup-system",
                "--include-crds",
                "--set",
                "createNamespace=true",
            ])
            .args(&helm_flags)
            .output()
            .expect("helm runs");
        assert!(
            out.status.success(),
            "helm template: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = objects(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            rendered.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "the chart renders other objects than arca install {install_flags:?}"
        );
        for (key, object) in &expected {
            assert_eq!(
                &rendered[key], object,
                "{key} differs between the chart and arca install {install_flags:?}"
            );
        }
    }
}
