//! Rules kept in a ConfigMap, as Velero keeps them (a Restore's resource modifiers, a
//! Backup's resource policies): the ConfigMap is in the object's namespace, read as the
//! run's identity, and holds exactly one key whose value is the rules' YAML.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

/// The rules' text of ConfigMap `name` (`field`: the spec field naming it, for messages).
pub async fn read(
    client: &Client,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<String, String> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = maps
        .get_opt(name)
        .await
        .map_err(|e| format!("{field}: reading ConfigMap {name} in {namespace}: {e}"))?
        .ok_or_else(|| {
            format!(
                "{field}: there is no ConfigMap {name} in namespace {namespace}: create it, or remove {field}"
            )
        })?;
    single_value(name, &map.data.unwrap_or_default()).map(str::to_string)
}

/// The one value of a rules ConfigMap's data.
pub fn single_value<'a>(name: &str, data: &'a BTreeMap<String, String>) -> Result<&'a str, String> {
    match data.values().collect::<Vec<_>>().as_slice() {
        [one] => Ok(one.as_str()),
        _ => Err(format!(
            "ConfigMap {name} must hold exactly one key (the rules' YAML); it holds {}",
            data.len()
        )),
    }
}

/// The labels of an object's JSON (none when absent or not strings).
pub fn labels_of(object: &serde_json::Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_exactly() {
        let one = BTreeMap::from([("rules.yaml".to_string(), "version: v1".to_string())]);
        assert_eq!(single_value("m", &one), Ok("version: v1"));
        let two = BTreeMap::from([
            ("a".to_string(), String::new()),
            ("b".to_string(), String::new()),
        ]);
        assert!(
            single_value("m", &two)
                .expect_err("two")
                .contains("exactly one key")
        );
        assert!(single_value("m", &BTreeMap::new()).is_err());
    }
}
