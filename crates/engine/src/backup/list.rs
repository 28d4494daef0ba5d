//! Paginated lists read as raw JSON: each item is kept byte for byte, and only the few
//! fields a backup needs (name, namespace, labels, volume references) are parsed.

use std::collections::BTreeMap;

use bytes::Bytes;
use kube::{Client, api::ListParams, core::Request};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::plan::ListScope;
use crate::catalogue::ResourceType;

/// A page is cut to about this many bytes by lowering the page size.
const PAGE_TARGET_BYTES: usize = 8 * 1024 * 1024;

/// The path of a list request.
pub fn list_url(rt: &ResourceType, scope: &ListScope) -> String {
    let base = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    match scope {
        ListScope::Namespace(ns) => format!("{base}/namespaces/{ns}/{}", rt.plural),
        ListScope::AllNamespaces | ListScope::Cluster => format!("{base}/{}", rt.plural),
    }
}

/// The path of one object.
pub fn object_url(rt: &ResourceType, namespace: Option<&str>, name: &str) -> String {
    let scope = match namespace {
        Some(ns) => ListScope::Namespace(ns.to_string()),
        None => ListScope::Cluster,
    };
    format!("{}/{name}", list_url(rt, &scope))
}

#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(default)]
    metadata: RawListMeta,
    #[serde(borrow, default)]
    items: Vec<&'a RawValue>,
}

#[derive(Default, Deserialize)]
struct RawListMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// What a backup reads of an item besides its bytes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub metadata: HeadMeta,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadMeta {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
}

/// The volume claims of a pod.
#[derive(Debug, Default, Deserialize)]
pub struct PodClaims {
    #[serde(default)]
    spec: PodClaimsSpec,
}

#[derive(Debug, Default, Deserialize)]
struct PodClaimsSpec {
    #[serde(default)]
    volumes: Vec<PodVolume>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodVolume {
    #[serde(default)]
    persistent_volume_claim: Option<ClaimRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimRef {
    claim_name: String,
}

impl PodClaims {
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.spec.volumes.iter().filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str())
        })
    }
}

/// The volume a claim is bound to.
#[derive(Debug, Default, Deserialize)]
pub struct ClaimVolume {
    #[serde(default)]
    spec: ClaimVolumeSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimVolumeSpec {
    #[serde(default)]
    volume_name: Option<String>,
}

impl ClaimVolume {
    pub fn volume_name(&self) -> Option<&str> {
        self.spec.volume_name.as_deref().filter(|v| !v.is_empty())
    }
}

/// One listed item: its head and its bytes, with `apiVersion` and `kind` set.
#[derive(Debug)]
pub struct RawItem {
    pub head: Head,
    pub json: Bytes,
}

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<RawItem>,
    pub continue_token: Option<String>,
    pub bytes: usize,
}

/// Reads one page.
pub async fn fetch_page(
    client: &Client,
    url: &str,
    limit: u32,
    continue_token: Option<&str>,
    label_selector: Option<&str>,
    rt: &ResourceType,
) -> Result<Page, ListError> {
    let mut params = ListParams::default().limit(limit);
    if let Some(token) = continue_token {
        params = params.continue_token(token);
    }
    if let Some(selector) = label_selector {
        params = params.labels(selector);
    }
    let request = Request::new(url)
        .list(&params)
        .map_err(|e| ListError::Request(e.to_string()))?;
    let body = client
        .request_text(request)
        .await
        .map_err(ListError::Kube)?;
    parse_page(&body, rt)
}

/// Parses a list response body.
pub fn parse_page(body: &str, rt: &ResourceType) -> Result<Page, ListError> {
    let list: RawList<'_> =
        serde_json::from_str(body).map_err(|e| ListError::Parse(e.to_string()))?;
    let mut items = Vec::with_capacity(list.items.len());
    for raw in list.items {
        let head: Head =
            serde_json::from_str(raw.get()).map_err(|e| ListError::Parse(e.to_string()))?;
        let json = if head.api_version.is_some() && head.kind.is_some() {
            Bytes::copy_from_slice(raw.get().as_bytes())
        } else {
            with_type_meta(&rt.api_version(), &rt.kind, raw.get())
        };
        items.push(RawItem { head, json });
    }
    Ok(Page {
        items,
        continue_token: list.metadata.continue_token.filter(|t| !t.is_empty()),
        bytes: body.len(),
    })
}

/// Parses one object (from a GET) as a listed item.
pub fn parse_object(body: &str, rt: &ResourceType) -> Result<RawItem, ListError> {
    let raw: Box<RawValue> =
        serde_json::from_str(body).map_err(|e| ListError::Parse(e.to_string()))?;
    let head: Head =
        serde_json::from_str(raw.get()).map_err(|e| ListError::Parse(e.to_string()))?;
    let json = if head.api_version.is_some() && head.kind.is_some() {
        Bytes::copy_from_slice(raw.get().as_bytes())
    } else {
        with_type_meta(&rt.api_version(), &rt.kind, raw.get())
    };
    Ok(RawItem { head, json })
}

/// Items of a list lack `apiVersion` and `kind`; the archive's copies carry them, as
/// `kubectl get -o json` of one object would.
pub fn with_type_meta(api_version: &str, kind: &str, raw: &str) -> Bytes {
    let body = raw.trim_start();
    let rest = body.strip_prefix('{').unwrap_or(body);
    let separator = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    Bytes::from(format!(
        "{{\"apiVersion\":{},\"kind\":{}{separator}{rest}",
        quote(api_version),
        quote(kind)
    ))
}

/// The next page size: smaller when items are big, so a page stays near 8 MiB.
pub fn next_limit(page_size: u32, page: &Page) -> u32 {
    if page.items.is_empty() {
        return page_size;
    }
    let average = (page.bytes / page.items.len()).max(1);
    ((PAGE_TARGET_BYTES / average) as u32).clamp(10, page_size)
}

/// Why a list failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{0}")]
    Kube(#[source] kube::Error),
    #[error("building the request: {0}")]
    Request(String),
    #[error("the apiserver's answer could not be read: {0}")]
    Parse(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::tests::sample;

    #[test]
    fn urls() {
        let c = sample();
        let cm = c.get("configmaps").expect("configmaps");
        let deploy = c.get("deployments.apps").expect("deployments");
        let pv = c.get("persistentvolumes").expect("pv");
        assert_eq!(
            list_url(cm, &ListScope::Namespace("a".into())),
            "/api/v1/namespaces/a/configmaps"
        );
        assert_eq!(
            list_url(deploy, &ListScope::AllNamespaces),
            "/apis/apps/v1/deployments"
        );
        assert_eq!(object_url(pv, None, "pv1"), "/api/v1/persistentvolumes/pv1");
        assert_eq!(
            object_url(deploy, Some("a"), "web"),
            "/apis/apps/v1/namespaces/a/deployments/web"
        );
    }

    #[test]
    fn pages_keep_items_byte_for_byte_and_add_type_meta() {
        let c = sample();
        let cm = c.get("configmaps").expect("configmaps");
        let body = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"continue":"abc"},"items":[
            {"metadata":{"name":"a","namespace":"x","labels":{"k":"v"}},"data":{"z":"1"}},
            {"metadata":{"name":"b","namespace":"x","deletionTimestamp":"2026-01-01T00:00:00Z"}}]}"#;
        let page = parse_page(body, cm).expect("page");
        assert_eq!(page.continue_token.as_deref(), Some("abc"));
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[0].head.metadata.labels["k"], "v");
        assert!(page.items[1].head.metadata.deletion_timestamp.is_some());
        let value: serde_json::Value =
            serde_json::from_slice(&page.items[0].json).expect("valid JSON");
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "ConfigMap");
        assert_eq!(value["data"]["z"], "1");
    }

    #[test]
    fn custom_resources_already_carry_type_meta() {
        let c = sample();
        let widgets = c.get("widgets.example.com").expect("widgets");
        let body = r#"{"items":[{"apiVersion":"example.com/v2","kind":"Widget","metadata":{"name":"w"}}],"metadata":{}}"#;
        let page = parse_page(body, widgets).expect("page");
        let text = std::str::from_utf8(&page.items[0].json).expect("utf8");
        assert_eq!(text.matches("apiVersion").count(), 1, "{text}");
        assert!(page.continue_token.is_none());
    }

    #[test]
    fn splicing_handles_empty_objects() {
        let v: serde_json::Value =
            serde_json::from_slice(&with_type_meta("v1", "Thing", "{ }")).expect("valid JSON");
        assert_eq!(v, serde_json::json!({"apiVersion": "v1", "kind": "Thing"}));
    }

    #[test]
    fn references_are_read() {
        let pod: PodClaims = serde_json::from_str(
            r#"{"spec":{"volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"data"}},{"name":"c","configMap":{"name":"x"}}]}}"#,
        )
        .expect("pod");
        assert_eq!(pod.claim_names().collect::<Vec<_>>(), ["data"]);
        let pvc: ClaimVolume =
            serde_json::from_str(r#"{"spec":{"volumeName":"pv-1"}}"#).expect("pvc");
        assert_eq!(pvc.volume_name(), Some("pv-1"));
    }

    #[test]
    fn big_items_shrink_the_page() {
        let page = Page {
            items: (0..10)
                .map(|_| RawItem {
                    head: Head::default(),
                    json: Bytes::new(),
                })
                .collect(),
            continue_token: None,
            bytes: 10 * 1024 * 1024,
        };
        assert_eq!(next_limit(500, &page), 10);
        let small = Page {
            bytes: 10 * 1024,
            ..page
        };
        assert_eq!(next_limit(500, &small), 500);
    }
}
