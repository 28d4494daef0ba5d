//! The test environment itself: every component is really there and does its job.

use std::time::Duration;

use arca_e2e::{env, eventually};
use arca_engine::exec::{ExitStatus, run_in_pod};
use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    }))
    .expect("a valid pod")
}

async fn running_pod(pods: &Api<Pod>, name: &str) -> Pod {
    pods.create(&PostParams::default(), &pod(name))
        .await
        .expect("pod created");
    eventually("the pod to be Running", Duration::from_secs(30), || async {
        let p = pods.get(name).await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await
}

#[tokio::test]
async fn apiserver_reports_1_34() {
    let client = env().client().await.expect("client");
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34"),
        "{version:?}"
    );
    assert!(
        version.git_version.starts_with("v1.34."),
        "{}",
        version.git_version
    );
}

#[tokio::test]
async fn pod_is_scheduled_to_a_kwok_node_and_runs() {
    let env = env();
    let ns = env.namespace("smoke-pod").await.expect("namespace");
    let pods: Api<Pod> = Api::namespaced(env.client().await.expect("client"), &ns.name);
    let pod = running_pod(&pods, "sleeper").await;
    let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
    assert_eq!(
        node, "kwok-node-0",
        "bound by the scheduler to the kwok node"
    );
}

#[tokio::test]
async fn exec_returns_stdout_stderr_and_exit_code() {
    let env = env();
    let ns = env.namespace("smoke-exec").await.expect("namespace");
    let pods: Api<Pod> = Api::namespaced(env.client().await.expect("client"), &ns.name);
    running_pod(&pods, "shell").await;
    let command: Vec<String> = ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]
        .map(String::from)
        .to_vec();
    let out = run_in_pod(
        &pods,
        &ns.name,
        "shell",
        Some("main"),
        &command,
        Duration::from_secs(20),
    )
    .await
    .expect("exec ran");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-stdout\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    assert_eq!(out.exit, ExitStatus::Code(3));

    let ok: Vec<String> = ["true"].map(String::from).to_vec();
    let out = run_in_pod(&pods, &ns.name, "shell", None, &ok, Duration::from_secs(20))
        .await
        .expect("exec ran");
    assert_eq!(out.exit, ExitStatus::Code(0));
}

#[tokio::test]
async fn deployment_gets_its_pods() {
    let env = env();
    let ns = env.namespace("smoke-deploy").await.expect("namespace");
    let client = env.client().await.expect("client");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            }
        }
    }))
    .expect("a valid deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("created");
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    eventually(
        "3 running pods of the deployment",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running == 3).then_some(())
        },
    )
    .await;
    eventually(
        "the deployment to report 3 available",
        Duration::from_secs(60),
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.status?.available_replicas? == 3).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_finishes() {
    let env = env();
    let ns = env.namespace("smoke-delete").await.expect("namespace");
    let client = env.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    running_pod(&pods, "doomed").await;
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(&ns.name, &DeleteParams::default())
        .await
        .expect("delete accepted");
    eventually(
        "the namespace to be gone",
        Duration::from_secs(90),
        || async {
            match namespaces.get(&ns.name).await {
                Err(kube::Error::Api(e)) if e.code == 404 => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

#[tokio::test]
async fn s3_put_get_list_delete() {
    let env = env();
    let prefix = env.prefix();
    let s3 = env.env.s3_client();
    let bucket = &env.env.s3.bucket;
    let key = format!("{}/hello.txt", prefix.prefix);
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from_static(b"hello, arca"))
        .send()
        .await
        .expect("put");
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("get");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(&body[..], b"hello, arca");
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{}/", prefix.prefix))
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec![key.as_str()]);
    s3.delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .expect("delete");
    let after = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{}/", prefix.prefix))
        .send()
        .await
        .expect("list");
    assert!(after.contents().is_empty(), "deleted object still listed");
}

/// Three environments started at the same moment all come up, each on ports of its own (they
/// once picked the same ports, and `up` hung for minutes without an error).
#[test]
fn environments_started_together_never_share_a_port() {
    let root = arca_testenv::testenv_root();
    let names: Vec<String> = (0..3)
        .map(|i| format!("together-{:08x}-{i}", rand::random::<u32>()))
        .collect();
    let starts: Vec<_> = names
        .iter()
        .map(|name| {
            let (root, name) = (root.clone(), name.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime
                    .block_on(arca_testenv::Environment::up_in(&root, &name, false))
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let results: Vec<Result<arca_testenv::Environment, String>> = starts
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| Err("panicked".into())))
        .collect();
    // Read each environment's API server before stopping them all.
    let servers: std::collections::BTreeSet<String> = results
        .iter()
        .flatten()
        .map(|e| {
            std::fs::read_to_string(&e.kubeconfig)
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains("server:"))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for name in &names {
        let _ = arca_testenv::Environment::down(name);
    }
    let envs: Vec<&arca_testenv::Environment> = results
        .iter()
        .map(|r| r.as_ref().expect("every environment started"))
        .collect();
    let stores: std::collections::BTreeSet<&str> =
        envs.iter().map(|e| e.s3.endpoint.as_str()).collect();
    assert_eq!(servers.len(), 3, "three API servers: {servers:?}");
    assert_eq!(stores.len(), 3, "three S3 servers: {stores:?}");
}
