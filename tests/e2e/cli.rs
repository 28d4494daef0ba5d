//! The `arca` CLI and `arca install`, through the real binary, against the real cluster.

use arca_e2e::operator::{run_arca as arca, succeeded as ok};
use std::time::Duration;

use arca_e2e::{
    env, eventually, kubectl, kubectl_apply, operator::arca_binary, scenario::Scenario,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_is_accepted_by_the_apiserver_and_hardened() {
    let env = env();
    let ns = env.namespace("install").await.expect("namespace");
    let yaml = ok(&arca(
        env,
        &ns.name,
        &[
            "install",
            "--dry-run",
            "-o",
            "yaml",
            "--provider",
            "aws",
            "--bucket",
            "b",
            "--backup-location-config",
            "region=eu-west-1",
        ],
    ));
    // The apiserver checks every object (server-side dry run): nothing is written.
    let mut child = env
        .env
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), yaml.as_bytes())
        .expect("yaml");
    let out = child.wait_with_output().expect("kubectl");
    assert!(
        out.status.success(),
        "the apiserver refused the install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = String::from_utf8_lossy(&out.stdout);
    assert!(
        applied.contains("deployment.apps/arca serverside-applied (server dry run)"),
        "{applied}"
    );
    assert!(
        kubectl(env, &["get", "deploy", "-n", &ns.name, "-o", "name"]).is_empty(),
        "a dry run writes nothing"
    );

    let objects: Vec<serde_json::Value> = yaml
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v.is_object())
        .collect();
    let of = |kind: &'static str| objects.iter().filter(move |o| o["kind"] == kind);
    for binding in of("ClusterRoleBinding").chain(of("RoleBinding")) {
        assert_ne!(
            binding["roleRef"]["name"], "cluster-admin",
            "no cluster-admin binding"
        );
    }
    let pod = &of("Deployment").next().expect("deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for c in pod["containers"].as_array().expect("containers") {
        let sc = &c["securityContext"];
        assert_eq!(
            (
                &sc["runAsNonRoot"],
                &sc["readOnlyRootFilesystem"],
                &sc["allowPrivilegeEscalation"],
                &sc["privileged"]
            ),
            (&true.into(), &true.into(), &false.into(), &false.into()),
            "{c}"
        );
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(
            sc["capabilities"].get("add").is_none(),
            "the operator adds no capability"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        for need in ["requests", "limits"] {
            assert!(
                c["resources"][need]["cpu"].is_string()
                    && c["resources"][need]["memory"].is_string(),
                "{need}: {c}"
            );
        }
    }
    let policy = of("NetworkPolicy").next().expect("a NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["arca.dev/metrics-access"],
        "true",
        "metrics only from labelled namespaces"
    );
    assert!(of("BackupStorageLocation").next().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_describe_logs_download_and_restore_through_the_cli() {
    let scenario = Scenario::start("cliapp").await;
    let (env, _, arca_ns, app, _) = scenario.parts();
    let target = format!("{}-copy", app.name);
    kubectl_apply(
        env,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {}}}\ndata: {{mode: cli}}\n",
            app.name
        ),
    );
    let a = &arca_ns.name;

    let created = ok(&arca(
        env,
        a,
        &[
            "backup",
            "create",
            "b1",
            "--include-namespaces",
            &app.name,
            "--ttl",
            "24h",
            "--wait",
        ],
    ));
    assert!(created.contains("Backup b1: Completed"), "{created}");
    let described = ok(&arca(env, a, &["backup", "describe", "b1"]));
    assert!(
        described.contains("Phase:        Completed")
            && described.contains("of")
            && described.contains("TTL:          24h0m0s"),
        "{described}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&arca(env, a, &["backup", "get", "-o", "json"]))).expect("json");
    assert_eq!(listed["metadata"]["name"], "b1");
    let table = ok(&arca(env, a, &["backup", "get"]));
    assert!(
        table.starts_with("NAME") && table.contains("b1") && table.contains("Completed"),
        "{table}"
    );

    // Logs and contents come through the operator's short-lived URLs: no storage keys here.
    let logs = ok(&arca(env, a, &["backup", "logs", "b1"]));
    assert!(
        logs.contains("info") && logs.contains("wrote") && logs.contains("items"),
        "{logs}"
    );
    let file = env.env.dir.join(format!("{a}-b1.tar.zst"));
    ok(&arca(
        env,
        a,
        &[
            "backup",
            "download",
            "b1",
            "-f",
            file.to_str().expect("path"),
        ],
    ));
    let tar = zstd::stream::decode_all(std::fs::File::open(&file).expect("file")).expect("zstd");
    let mut archive = tar::Archive::new(&tar[..]);
    let paths: Vec<String> = archive
        .entries()
        .expect("tar")
        .filter_map(|e| e.ok()?.path().ok().map(|p| p.display().to_string()))
        .collect();
    assert!(
        paths.contains(&format!(
            "resources/configmaps/namespaces/{}/settings.json",
            app.name
        )),
        "{paths:?}"
    );

    let restored = ok(&arca(
        env,
        a,
        &[
            "restore",
            "create",
            "r1",
            "--from-backup",
            "b1",
            "--namespace-mappings",
            &format!("{}:{target}", app.name),
            "--wait",
        ],
    ));
    assert!(restored.contains("Restore r1: Completed"), "{restored}");
    assert_eq!(
        kubectl(
            env,
            &[
                "get",
                "cm",
                "settings",
                "-n",
                &target,
                "-o",
                "jsonpath={.data.mode}"
            ]
        ),
        "cli"
    );
    let described = ok(&arca(env, a, &["restore", "describe", "r1"]));
    assert!(
        described.contains("Outcomes:") && described.contains(&format!("{} -> {target}", app.name)),
        "{described}"
    );
    assert!(ok(&arca(env, a, &["restore", "logs", "r1"])).contains("created"));

    ok(&arca(
        env,
        a,
        &[
            "schedule",
            "create",
            "nightly",
            "--schedule",
            "0 3 * * *",
            "--include-namespaces",
            &app.name,
            "--keep-last",
            "3",
            "--skip-immediately",
        ],
    ));
    ok(&arca(env, a, &["schedule", "pause", "nightly"]));
    assert!(ok(&arca(env, a, &["schedule", "get", "nightly"])).contains("true"));
    ok(&arca(env, a, &["backup", "delete", "b1", "--confirm"]));
    eventually("b1 to be deleted", Duration::from_secs(30), || async {
        (!ok(&arca(env, a, &["backup", "get"])).contains("b1")).then_some(())
    })
    .await;
    kubectl(env, &["delete", "namespace", &target, "--wait=false"]);
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_line_naming_the_flag_and_exit_code_1() {
    let env = env();
    let ns = env.namespace("badcli").await.expect("namespace");
    arca_e2e::install_crds(&env.client().await.expect("client"))
        .await
        .expect("CRDs");
    let cases: &[(&[&str], &str)] = &[
        (&["backup", "create", "b", "--ttl", "3days"], "--ttl"),
        (&["backup", "create", "b", "-l", "app in web"], "--selector"),
        (
            &["backup", "create", "b", "--selector", "!!!"],
            "--selector",
        ),
        (
            &["backup", "create", "b", "--or-selector", "app in"],
            "--or-selector",
        ),
        (&["backup", "create", "Bad_Name"], "not a valid name"),
        (
            &[
                "backup",
                "create",
                "b",
                "--include-cluster-resources",
                "maybe",
            ],
            "--include-cluster-resources",
        ),
        (&["backup", "describe", "missing"], "no backup \"missing\""),
        (&["backup", "logs", "missing"], "no backup \"missing\""),
        (
            &["backup", "delete", "missing", "--confirm"],
            "no backup \"missing\"",
        ),
        (&["restore", "create", "r"], "--from-backup"),
        (
            &[
                "agent",
                "--node-name",
                " ",
                "--host-pods-dir",
                "/nonexistent",
            ],
            "--node-name",
        ),
        (
            &[
                "restore",
                "create",
                "r",
                "--from-backup",
                "b",
                "--namespace-mappings",
                "a-b",
            ],
            "--namespace-mappings",
        ),
        (
            &[
                "restore",
                "create",
                "r",
                "--from-backup",
                "b",
                "--existing-resource-policy",
                "sometimes",
            ],
            "--existing-resource-policy",
        ),
        (
            &["restore", "describe", "missing"],
            "no restore \"missing\"",
        ),
        (
            &["schedule", "create", "s", "--schedule", "61 * * * *"],
            "--schedule",
        ),
        (
            &[
                "schedule",
                "create",
                "s",
                "--schedule",
                "@daily",
                "--time-zone",
                "Mars/Olympus",
            ],
            "--time-zone",
        ),
        (&["schedule", "pause", "missing"], "no schedule \"missing\""),
        (
            &[
                "location",
                "create",
                "l",
                "--provider",
                "gcs",
                "--bucket",
                "b",
            ],
            "--provider",
        ),
        (
            &[
                "location",
                "create",
                "l",
                "--provider",
                "aws",
                "--bucket",
                "b",
                "--config",
                "region",
            ],
            "--config",
        ),
        (
            &[
                "location",
                "create",
                "l",
                "--provider",
                "aws",
                "--bucket",
                "b",
                "--credential",
                "nokey",
            ],
            "--credential",
        ),
        (
            &["location", "set", "missing", "--default", "true"],
            "no location \"missing\"",
        ),
        (
            &["install", "--provider", "gcs", "--bucket", "b", "--dry-run"],
            "--provider",
        ),
        (&["backup", "get", "-o", "xml"], "--output"),
        (
            &[
                "install",
                "--provider",
                "filesystem",
                "--bucket",
                "b",
                "--dry-run",
            ],
            "--provider filesystem",
        ),
        (&["install", "--dry-run", "--replicas", "9"], "--replicas"),
        (&["backup", "download", "missing"], "no backup \"missing\""),
        (&["restore", "logs", "missing"], "no restore \"missing\""),
        (
            &["schedule", "unpause", "missing"],
            "no schedule \"missing\"",
        ),
        (
            &["schedule", "delete", "missing", "--confirm"],
            "no schedule \"missing\"",
        ),
        (&["location", "get", "missing"], "no location \"missing\""),
        (&["backup", "frobnicate"], "frobnicate"),
    ];
    for (args, expected) in cases {
        let out = arca(env, &ns.name, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, not {stderr:?}"
        );
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Installed as `kubectl-arca` on PATH, `kubectl arca ...` runs it (kubectl passes the
/// environment, so KUBECONFIG reaches it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_as_a_kubectl_plugin() {
    let env = env();
    let ns = env.namespace("plugin").await.expect("namespace");
    arca_e2e::install_crds(&env.client().await.expect("client"))
        .await
        .expect("CRDs");
    let dir = env.env.dir.join(format!("plugin-{}", ns.name));
    std::fs::create_dir_all(&dir).expect("plugin folder");
    std::os::unix::fs::symlink(arca_binary(), dir.join("kubectl-arca")).expect("symlink");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(env.env.bin.join("kubectl"))
        .env("PATH", path)
        .env("KUBECONFIG", &env.env.kubeconfig)
        .args(["arca", "backup", "get", "-n", &ns.name, "-o", "json"])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl arca: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list["items"], serde_json::json!([]), "{list}");
}
