//! The Secrets the operator makes for itself at its first start (the repositories' password,
//! the seal key): created once, never replaced.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

/// Creates Secret `namespace/name` holding `key: value`; true when this call made it, false
/// when it already existed (another replica won the race, or an admin put it there): it is
/// then left as it is.
pub async fn create_once(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    value: Vec<u8>,
) -> Result<bool, kube::Error> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "arca".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(key.to_string(), ByteString(value))])),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
