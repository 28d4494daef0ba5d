//! The RBAC `arca install` grants is enough, and no more than it says: the operator runs as
//! the installed ServiceAccount (a real token, no admin certificate) and backs up and
//! restores a namespace with RBAC objects, a Secret and a workload in it.

use arca_e2e::{
    kubectl, kubectl_apply,
    operator::{Operator, arca_binary, settings},
    scenario::Scenario,
    small_app,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::DeleteParams,
    config::{KubeConfigOptions, Kubeconfig},
};

/// The install's ServiceAccount and RBAC for `namespace`, as YAML; cluster-wide bindings get
/// the namespace in their name so parallel tests do not rebind each other's.
fn installed_rbac(namespace: &str) -> (String, Vec<String>) {
    let out = std::process::Command::new(arca_binary())
        .args(["install", "--dry-run", "-o", "yaml", "-n", namespace])
        .output()
        .expect("arca install runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut yaml = String::new();
    let mut bindings = Vec::new();
    for doc in String::from_utf8_lossy(&out.stdout).split("\n---") {
        let Ok(mut object) = serde_yaml::from_str::<serde_json::Value>(doc) else {
            continue;
        };
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        if !matches!(
            kind.as_str(),
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
        ) {
            continue;
        }
        if kind == "ClusterRoleBinding" {
            let name = format!(
                "{}-{namespace}",
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            object["metadata"]["name"] = name.clone().into();
            bindings.push(name);
        }
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&object).expect("yaml"));
    }
    (yaml, bindings)
}

/// A client with the ServiceAccount's token and nothing else.
async fn service_account_client(env: &arca_e2e::TestEnv, namespace: &str) -> Client {
    let token = kubectl(
        env,
        &[
            "create",
            "token",
            "arca",
            "-n",
            namespace,
            "--duration",
            "1h",
        ],
    );
    assert!(!token.is_empty(), "a token for the ServiceAccount");
    let mut config: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&env.env.kubeconfig).expect("kubeconfig"))
            .expect("kubeconfig yaml");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"] = serde_json::json!({ "token": token.trim() });
    }
    let kubeconfig: Kubeconfig = serde_json::from_value(config).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installed_rbac_is_enough_to_back_up_and_restore() {
    // The operator runs with the ServiceAccount's client, so the test starts it itself.
    let scenario = Scenario::prepare("rbacapp").await;
    let (env, _, arca, app, _) = scenario.parts();
    let ns = &app.name;
    let copy = format!("{ns}-copy");
    kubectl_apply(env, &small_app(ns));
    let (rbac, bindings) = installed_rbac(&arca.name);
    kubectl_apply(env, &rbac);
    let operator_client = service_account_client(env, &arca.name).await;

    // Really the ServiceAccount: it may not delete user data.
    let as_operator: Api<ConfigMap> = Api::namespaced(operator_client.clone(), ns);
    match as_operator
        .delete("settings", &DeleteParams::default())
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the operator's identity deleted a ConfigMap: {other:?}"),
    }

    // Restores watch CRDs (until Established) and namespaces (until gone from Terminating),
    // and tenants' runs impersonate ServiceAccounts.
    let account = format!("--as=system:serviceaccount:{}:arca", arca.name);
    for (verb, resource) in [
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "namespaces"),
        ("impersonate", "serviceaccounts"),
    ] {
        assert_eq!(
            kubectl(env, &["auth", "can-i", verb, resource, &account]).trim(),
            "yes",
            "{verb} {resource}"
        );
    }
    let operator = Operator::start_as(env, operator_client, settings(&arca.name), None);
    scenario.completed_backup("b").await;
    scenario
        .completed_restore(
            "r",
            &format!("{{backupName: b, namespaceMapping: {{{ns}: {copy}}}}}"),
        )
        .await;
    for object in [
        "configmap/settings",
        "secret/token",
        "serviceaccount/app",
        "role/app",
        "rolebinding/app",
        "deployment/web",
    ] {
        assert_eq!(
            kubectl(env, &["get", object, "-n", &copy, "-o", "name"]).trim(),
            object
                .replace("deployment/", "deployment.apps/")
                .replace("role/", "role.rbac.authorization.k8s.io/")
                .replace("rolebinding/", "rolebinding.rbac.authorization.k8s.io/"),
            "{object} restored into {copy}"
        );
    }
    operator.stop().await;
    kubectl(env, &["delete", "namespace", &copy, "--wait=false"]);
    for binding in bindings {
        kubectl(env, &["delete", "clusterrolebinding", &binding]);
    }
}
