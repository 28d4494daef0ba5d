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

/// How often a page is asked for when the apiserver answers with a transient failure
/// (throttled, overloaded, a dropped connection), and the pause before the first retry
/// (doubled each time).
const PAGE_ATTEMPTS: u32 = 4;
const FIRST_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

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

/// Reads one page, asking again (a few times, with growing pauses) while the apiserver's
/// failure is transient: a busy apiserver must not cost a backup its items.
pub async fn fetch_page(
    client: &Client,
    url: &str,
    limit: u32,
    continue_token: Option<&str>,
    label_selector: Option<&str>,
    rt: &ResourceType,
) -> Result<Page, ListError> {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        match fetch_page_once(client, url, limit, continue_token, label_selector, rt).await {
            Err(e) if e.is_transient() && attempt < PAGE_ATTEMPTS => {
                tracing::debug!(url, attempt, "listing again after a transient failure: {e}");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn fetch_page_once(
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

impl ListError {
    /// The apiserver no longer serves the resource type: it was discovered when the backup
    /// began and removed since (a CRD deleted mid-backup). No object of it exists to back up.
    pub fn type_gone(&self) -> bool {
        matches!(self, Self::Kube(kube::Error::Api(s)) if s.code == 404)
    }

    /// The identity the run acts as may not do this.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Kube(kube::Error::Api(s)) if s.code == 403)
    }

    /// Worth asking again: throttling, an overloaded or restarting apiserver, a dropped
    /// connection. Refusals (forbidden, bad request) and unreadable answers are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube(kube::Error::Api(s)) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
            Self::Kube(
                kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_),
            ) => true,
            _ => false,
        }
    }
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
        assert_eq!(
            list_url(pv, &ListScope::Cluster),
            "/api/v1/persistentvolumes"
        );
    }

    /// A client whose apiserver answers each request with the next of `answers` (status,
    /// body), and the number of requests it saw.
    fn scripted(answers: Vec<(u16, &'static str)>) -> (Client, tokio::task::JoinHandle<usize>) {
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let server = tokio::spawn(async move {
            let mut seen = 0;
            for (status, body) in answers {
                let Some((_request, respond)) = handle.next_request().await else {
                    break;
                };
                seen += 1;
                let response = http::Response::builder()
                    .status(status)
                    .body(kube::client::Body::from(body.as_bytes().to_vec()))
                    .expect("response");
                respond.send_response(response);
            }
            seen
        });
        (Client::new(service, "default"), server)
    }

    const UNAVAILABLE: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server is currently unable to handle the request","reason":"ServiceUnavailable","code":503}"#;
    const NOT_FOUND: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#;
    const FORBIDDEN: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"configmaps is forbidden","reason":"Forbidden","code":403}"#;
    const ONE_ITEM: &str = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"a","namespace":"n"}}]}"#;

    #[tokio::test(start_paused = true)]
    async fn a_busy_apiserver_is_asked_again_and_its_page_is_kept() {
        let c = sample();
        let cm = c.get("configmaps").expect("configmaps");
        let (client, server) = scripted(vec![
            (503, UNAVAILABLE),
            (429, UNAVAILABLE),
            (200, ONE_ITEM),
        ]);
        let page = fetch_page(
            &client,
            "/api/v1/namespaces/n/configmaps",
            10,
            None,
            None,
            cm,
        )
        .await
        .expect("the third answer is a page");
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].head.metadata.name, "a");
        assert_eq!(server.await.expect("server"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_apiserver_is_asked_a_bounded_number_of_times() {
        let c = sample();
        let cm = c.get("configmaps").expect("configmaps");
        let (client, server) = scripted(vec![(503, UNAVAILABLE); 6]);
        let e = fetch_page(
            &client,
            "/api/v1/namespaces/n/configmaps",
            10,
            None,
            None,
            cm,
        )
        .await
        .expect_err("never answers");
        assert!(e.is_transient() && !e.type_gone(), "{e}");
        drop(client);
        assert_eq!(server.await.expect("server"), PAGE_ATTEMPTS as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_or_a_removed_type_is_not_asked_again() {
        let c = sample();
        let cm = c.get("configmaps").expect("configmaps");
        for (status, body, gone) in [(403, FORBIDDEN, false), (404, NOT_FOUND, true)] {
            let (client, server) = scripted(vec![(status, body), (200, ONE_ITEM)]);
            let e = fetch_page(
                &client,
                "/api/v1/namespaces/n/configmaps",
                10,
                None,
                None,
                cm,
            )
            .await
            .expect_err("refused");
            assert!(!e.is_transient(), "{e}");
            assert_eq!(e.type_gone(), gone, "{e}");
            assert_eq!(e.is_forbidden(), !gone, "{e}");
            drop(client);
            assert_eq!(server.await.expect("server"), 1, "asked once for {status}");
        }
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
