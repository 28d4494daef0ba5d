//! `arca install --use-node-agent` into a cluster with a real node: the operator and agent run
//! as pods of Arca's image, confined as the install says; a pod's files, written from inside
//! its container into an emptyDir and a PersistentVolumeClaim, are backed up with hooks that
//! run in the container, and restored (after the namespace is gone) before the pod's own
//! container starts; uninstall keeps the backups.

use std::time::Duration;

use arca_e2e::{eventually, kubectl, kubectl_apply};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Namespace, PersistentVolume},
};
use kube::{Api, api::DeleteParams};

use crate::helpers::{
    arca, install_arca, location_available, logs, node_env, ok, process_facts, ready_pods,
    real_node, restored_with_helper, uninstall,
};

const LONG: Duration = Duration::from_secs(240);

/// The workload: writes a random seed into the claim and a note into the emptyDir the first
/// time it starts (never when they are there), and logs what it finds at start.
fn workload(ns: &str, node: &str, test_image: &str, pv_dir: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: {ns}-pv}}
spec:
  capacity: {{storage: 64Mi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: arca-test-local
  local: {{path: {pv_dir}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: arca-test-local
  volumeName: {ns}-pv
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: {ns}
  annotations:
    backup.velero.io/backup-volumes: data,cache
    pre.hook.backup.velero.io/container: app
    pre.hook.backup.velero.io/command: '["sh", "-c", "date > /cache/pre-hook && sync"]'
    post.hook.backup.velero.io/container: app
    post.hook.backup.velero.io/command: '["sh", "-c", "date > /cache/post-hook"]'
spec:
  nodeSelector: {{arca.dev/real-node: "true"}}
  tolerations: [{{key: arca.dev/real-node, operator: Exists, effect: NoSchedule}}]
  securityContext: {{runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000}}
  containers:
  - name: app
    image: {test_image}
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      if [ ! -f /data/seed ]; then
        echo "first start: writing data"
        head -c 2097152 /dev/urandom > /data/seed
        mkdir -p /data/nested/deeper && echo nested > /data/nested/deeper/file
        echo "note from the first run" > /cache/note
      fi
      echo "at start: seed $(sha256sum /data/seed | cut -d' ' -f1)"
      echo "at start: note $(cat /cache/note)"
      exec sleep 100000
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: cache, mountPath: /cache}}
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
  - name: cache
    emptyDir: {{}}
"#
    )
}

fn exec(env: &arca_e2e::TestEnv, ns: &str, script: &str) -> String {
    kubectl(
        env,
        &[
            "exec", "-n", ns, "app", "-c", "app", "--", "sh", "-c", script,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_arca_backs_up_and_restores_a_pod_on_a_real_node() {
    let env = node_env();
    let node = real_node(env);
    let client = env.client().await.expect("client");
    let system = env.namespace("arca").await.expect("namespace");
    let sys = system.name.as_str();
    let prefix = env.prefix();

    // 1. Installed as a user installs it, with the environment's kubelet folder.
    let out = install_arca(env, sys, &prefix.prefix);
    assert!(out.contains("Arca is installed"), "{out}");

    // 2. The operator runs on the real node, is Ready and holds the lease; its process is
    // confined as the manifest says (read from the kernel, on the node).
    let operator = ready_pods(
        &client,
        sys,
        "app.kubernetes.io/component=operator",
        1,
        LONG,
    )
    .await
    .remove(0);
    let operator_name = operator.metadata.name.clone().expect("name");
    assert_eq!(
        operator.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name.as_str())
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), sys);
    eventually("the operator to hold the lease", LONG, || async {
        let lease = leases.get("arca-operator").await.ok()?;
        (lease.spec?.holder_identity? == operator_name).then_some(())
    })
    .await;
    let facts = process_facts(env, &operator, "arca");
    assert_eq!(facts.uid, "65532", "{facts:?}");
    assert_eq!(facts.effective_caps, 0, "no capabilities: {facts:?}");
    assert!(
        facts.no_new_privs && facts.seccomp_filtered && facts.root_read_only,
        "{facts:?}"
    );
    let agent_ns = format!("{sys}-node-agent");
    let agents = ready_pods(
        &client,
        &agent_ns,
        "app.kubernetes.io/component=node-agent",
        2,
        LONG,
    )
    .await;
    let agent = agents
        .iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node.name))
        .expect("an agent on the real node");
    let facts = process_facts(env, agent, "agent");
    assert_eq!(facts.uid, "0", "{facts:?}");
    // CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID: bits 0-4, nothing else.
    assert_eq!(facts.effective_caps, 0x1f, "{facts:?}");
    assert!(
        facts.no_new_privs && facts.seccomp_filtered && facts.root_read_only,
        "{facts:?}"
    );
    location_available(env, sys, "default", LONG).await;

    // 2b. Name resolution in the image: a store given by host name, from the pod's
    // /etc/hosts (hostAliases; no DNS server runs in this cluster).
    let host_ip = node
        .s3_endpoint_in_cluster
        .trim_start_matches("http://")
        .split(':')
        .next()
        .expect("host")
        .to_string();
    kubectl(
        env,
        &[
            "patch",
            "deployment",
            "arca",
            "-n",
            sys,
            "-p",
            &format!(
                r#"{{"spec":{{"template":{{"spec":{{"hostAliases":[{{"ip":"{host_ip}","hostnames":["s3.arca-testenv.example"]}}]}}}}}}}}"#
            ),
        ],
    );
    kubectl(
        env,
        &[
            "rollout",
            "status",
            "deployment/arca",
            "-n",
            sys,
            "--timeout=180s",
        ],
    );
    kubectl_apply(
        env,
        &format!(
            r#"apiVersion: arca.dev/v1alpha1
kind: BackupStorageLocation
metadata: {{name: by-name, namespace: {sys}}}
spec:
  provider: aws
  objectStorage: {{bucket: {bucket}, prefix: {prefix}/by-name}}
  config: {{region: {region}, s3ForcePathStyle: "true", s3Url: "http://s3.arca-testenv.example:9000"}}
  credential: {{name: cloud-credentials, key: cloud}}
"#,
            bucket = env.env.s3.bucket,
            prefix = prefix.prefix,
            region = env.env.s3.region,
        ),
    );
    location_available(env, sys, "by-name", LONG).await;

    // 3. A workload on the real node writes its files from inside its container.
    let app = env.namespace("app").await.expect("namespace");
    let ns = app.name.as_str();
    let pv_dir = env.env.dir.join(format!("local-pv-{ns}"));
    std::fs::create_dir_all(&pv_dir).expect("pv folder");
    kubectl_apply(
        env,
        &workload(
            ns,
            &node.name,
            &node.test_image,
            &pv_dir.display().to_string(),
        ),
    );
    ready_pods(&client, ns, "", 1, LONG).await;

    // People get Arca through the built-in roles (aggregated): `edit` creates Backups, never
    // the node agent's work items.
    kubectl(env, &["create", "serviceaccount", "person", "-n", ns]);
    kubectl(
        env,
        &[
            "create",
            "rolebinding",
            "person-edit",
            "-n",
            ns,
            "--clusterrole=edit",
            &format!("--serviceaccount={ns}:person"),
        ],
    );
    let can = |verb: &'static str, resource: &'static str| {
        let out = env
            .env
            .kubectl()
            .args(["auth", "can-i", verb, resource, "-n", ns])
            .arg(format!("--as=system:serviceaccount:{ns}:person"))
            .output()
            .expect("kubectl runs");
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    eventually("edit to take in arca-edit (aggregation)", LONG, || async {
        can("create", "backups.arca.dev").then_some(())
    })
    .await;
    assert!(can("list", "restores.arca.dev") && can("delete", "schedules.arca.dev"));
    assert!(
        !can("create", "podvolumebackups.arca.dev"),
        "never the agent's work items"
    );
    assert!(!can("update", "podvolumerestores.arca.dev"));
    let seed = exec(env, ns, "sha256sum /data/seed | cut -d' ' -f1");
    assert_eq!(seed.trim().len(), 64, "{seed}");
    assert!(logs(env, ns, "app", "app").contains("first start: writing data"));

    // 4. Backup with hooks that run inside the container.
    let out = ok(
        "arca backup create",
        &arca(
            env,
            sys,
            &[
                "backup",
                "create",
                "b1",
                "--include-namespaces",
                ns,
                "--wait",
            ],
        ),
    );
    assert!(out.contains("Completed"), "{out}");
    let markers = exec(env, ns, "ls /cache");
    assert!(
        markers.contains("pre-hook") && markers.contains("post-hook"),
        "the hooks ran in the container: {markers}"
    );
    let describe = ok(
        "backup describe",
        &arca(env, sys, &["backup", "describe", "b1"]),
    );
    assert!(describe.contains("Completed"), "{describe}");

    // 5. Disaster: the namespace and its volume are gone, and the volume's folder is empty.
    kubectl(
        env,
        &["delete", "namespace", ns, "--wait=true", "--timeout=180s"],
    );
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pvs.delete(&format!("{ns}-pv"), &DeleteParams::default())
        .await
        .expect("pv deleted");
    std::fs::remove_dir_all(&pv_dir).expect("pv folder emptied");
    std::fs::create_dir_all(&pv_dir).expect("pv folder");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually("the namespace to be gone", LONG, || async {
        namespaces.get_opt(ns).await.ok()?.is_none().then_some(())
    })
    .await;

    // 6. Restore: the data is in place before the workload's own container starts.
    restored_with_helper(env, &client, (sys, "r1", "b1"), (ns, ""), LONG).await;
    let helper_log = logs(env, ns, "app", "arca-restore-wait");
    assert!(
        helper_log.contains("every volume is restored"),
        "the helper saw every volume done: {helper_log}"
    );
    let app_log = logs(env, ns, "app", "app");
    assert!(
        !app_log.contains("first start"),
        "the container found its data at start: {app_log}"
    );
    assert!(
        app_log.contains(&format!("at start: seed {}", seed.trim()))
            && app_log.contains("at start: note note from the first run"),
        "the container's own log shows the restored data at start: {app_log}"
    );
    let after = exec(
        env,
        ns,
        "sha256sum /data/seed | cut -d' ' -f1; cat /data/nested/deeper/file; ls -a /cache /data",
    );
    assert!(after.starts_with(seed.trim()), "{after}");
    assert!(after.contains("nested"), "{after}");
    assert!(
        after.contains("pre-hook") && !after.contains("post-hook"),
        "the volume was read between the pre and the post hook: {after}"
    );
    assert!(
        !after.contains(".arca-restore"),
        "the helper removed the markers: {after}"
    );

    // 7. Uninstall keeps every backup in the bucket, and says so.
    let out = uninstall(env, sys);
    assert!(out.contains("Every backup in the bucket is kept"), "{out}");
    let store = arca_e2e::store(env, &prefix.prefix).await;
    let kept = store
        .get("backups/b1/backup.json")
        .await
        .expect("backup.json is still in the bucket");
    assert!(!kept.is_empty());
    // Bound to the restored claim until the namespace goes (with the test): no waiting.
    kubectl(
        env,
        &[
            "delete",
            "pv",
            &format!("{ns}-pv"),
            "--ignore-not-found",
            "--wait=false",
        ],
    );
}
