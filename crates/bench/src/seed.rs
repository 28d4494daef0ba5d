//! Making the objects a benchmark works on.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::{Api, Client, api::PostParams};

pub const NAMESPACES: usize = 100;

pub fn namespace(i: usize) -> String {
    format!("bench-{i:03}")
}

fn payload() -> String {
    let size = 1024 + rand::random::<u32>() as usize % 1024;
    (0..size)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect()
}

pub async fn namespaces(
    client: &Client,
    names: impl Iterator<Item = String>,
) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Object `i` of a benchmark set: even ones ConfigMaps, odd ones Secrets, spread over the
/// namespaces.
pub fn object(i: usize, prefix: &str) -> (String, serde_json::Value) {
    let ns = format!("{prefix}{}", namespace(i % NAMESPACES));
    let body = if i.is_multiple_of(2) {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": ns}, "data": {"payload": payload()}})
    } else {
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("secret-{i}"), "namespace": ns}, "stringData": {"payload": payload()}})
    };
    (ns, body)
}

async fn create(client: &Client, body: serde_json::Value) -> anyhow::Result<()> {
    let ns = body["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let result = if body["kind"] == "ConfigMap" {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &serde_json::from_value(body)?)
            .await
            .map(|_| ())
    } else {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &serde_json::from_value(body)?)
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates objects `range` concurrently (setup, not measured).
pub async fn objects(
    client: &Client,
    range: std::ops::Range<usize>,
    prefix: &str,
) -> anyhow::Result<()> {
    objects_at_once(client, range, prefix, 64).await
}

/// Creates objects `range`, `concurrency` at a time.
pub async fn objects_at_once(
    client: &Client,
    range: std::ops::Range<usize>,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(range)
        .map(|i| create(client, object(i, prefix).1))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Creates objects `range` one at a time: the floor of a restore.
pub async fn objects_one_by_one(
    client: &Client,
    range: std::ops::Range<usize>,
    prefix: &str,
) -> anyhow::Result<()> {
    for i in range {
        create(client, object(i, prefix).1).await?;
    }
    Ok(())
}
