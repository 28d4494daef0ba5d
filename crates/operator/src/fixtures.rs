//! Reconcile tests against a scripted apiserver (the model: kube-rs's controller-rs
//! fixtures). A scenario lists the requests a reconcile must make, in order, with the
//! apiserver's answer to each; a request out of order, an unexpected one, or one missing
//! fails the test. What a reconcile must not do (start a run, publish an Event) shows as a
//! request the script does not allow.

use std::{sync::Arc, time::Duration};

use arca_engine::{backup::BackupSettings, restore::RestoreSettings};
use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

use crate::{Clock, Settings, context::Context, metrics::Metrics};

/// The operator's namespace in scenarios.
pub const OPERATOR_NS: &str = "arca-system";

/// A clock that stands still.
#[derive(Debug)]
pub struct FixedClock(pub jiff::Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        self.0
    }
}

/// The time scenarios run at.
pub fn now() -> jiff::Timestamp {
    "2026-11-27T12:00:00Z".parse().expect("a time")
}

pub fn settings() -> Settings {
    Settings {
        namespace: OPERATOR_NS.into(),
        default_backup_ttl: Duration::from_secs(720 * 3600),
        backup: BackupSettings::default(),
        restore: RestoreSettings::default(),
        max_concurrent_backups: 1,
        max_concurrent_restores: 1,
        validation_frequency: Duration::from_secs(60),
        gc_frequency: Duration::from_secs(3600),
        backup_sync_period: Duration::from_secs(60),
        leader_election: None,
        watch_namespace: None,
        fs_backup_timeout: Duration::from_secs(60),
        restore_helper_image: None,
        default_service_account: "arca".into(),
        tenant_storage: Vec::new(),
        scratch_dir: std::env::temp_dir().join("arca-scratch"),
        scratch_bytes: 256 * 1024 * 1024,
    }
}

/// One request a scenario expects: its method, its path (with query parameters it must
/// carry, percent-encoded, if any), and the answer.
#[derive(Debug)]
pub struct Expect {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub answer: Value,
}

impl Expect {
    pub fn new(method: Method, path: impl Into<String>, answer: Value) -> Self {
        Self {
            method,
            path: path.into(),
            status: StatusCode::OK,
            answer,
        }
    }

    /// The apiserver refuses a write because the object changed since it was read.
    pub fn conflict(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            status: StatusCode::CONFLICT,
            answer: json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "the object has been modified; please apply your changes to the latest version and try again",
                "reason": "Conflict", "code": 409}),
        }
    }
}

/// The scripted apiserver and a Context whose client talks to it.
pub struct ApiServer {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiServer")
    }
}

/// The seal keys of the scripted operator.
pub fn seal_keys() -> arca_store::KeyRing {
    arca_store::KeyRing::new(
        arca_store::Key::from_bytes([42; 32]),
        vec![],
        format!("Secret {OPERATOR_NS}/arca-metadata-key"),
    )
}

/// A Context over a scripted apiserver, with a fixed clock and fresh metrics.
pub fn context() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let ctx = Context::new(
        client,
        settings(),
        Arc::new(Metrics::default()),
        Arc::new(FixedClock(now())),
    )
    .with_seal_keys(seal_keys());
    (Arc::new(ctx), ApiServer { handle })
}

impl ApiServer {
    /// Runs `work` (a reconcile) while answering its requests from `script`, in order.
    /// Returns its output and the body of each request (JSON null when empty). Panics on a
    /// request out of order or beyond the script, and when `work` ends with some of the
    /// script unused.
    pub async fn drive<F: std::future::Future>(
        mut self,
        script: Vec<Expect>,
        work: F,
    ) -> (F::Output, Vec<Value>) {
        tokio::pin!(work);
        let mut script = script.into_iter();
        let mut sent = Vec::new();
        loop {
            tokio::select! {
                biased;
                out = &mut work => {
                    // Every request `work` made was answered or is queued now.
                    self.assert_no_more_requests();
                    if let Some(missing) = script.next() {
                        panic!("the reconcile ended before {missing:?}");
                    }
                    return (out, sent);
                }
                next = self.handle.next_request() => {
                    let Some((request, respond)) = next else {
                        panic!("the client went away");
                    };
                    let method = request.method().clone();
                    let uri = request.uri();
                    let path = uri.path().to_string();
                    let query = uri.query().unwrap_or_default().to_string();
                    let Some(expect) = script.next() else {
                        panic!("an unexpected request: {method} {path}");
                    };
                    // An expected path with a query must match it too.
                    let (want_path, want_query) = expect
                        .path
                        .split_once('?')
                        .unwrap_or((expect.path.as_str(), ""));
                    assert_eq!(
                        (&method, path.as_str()),
                        (&expect.method, want_path),
                        "the reconcile made another request than the one expected"
                    );
                    for pair in want_query.split('&').filter(|p| !p.is_empty()) {
                        assert!(
                            query.split('&').any(|q| q == pair),
                            "{method} {path}?{query} lacks {pair}"
                        );
                    }
                    let bytes = request
                        .into_body()
                        .collect()
                        .await
                        .expect("a request body")
                        .to_bytes();
                    sent.push(if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).expect("a JSON body")
                    });
                    respond.send_response(
                        Response::builder()
                            .status(expect.status)
                            .body(Body::from(
                                serde_json::to_vec(&expect.answer).expect("json"),
                            ))
                            .expect("a response"),
                    );
                }
            }
        }
    }

    /// Panics if a request is waiting: called once the reconcile has returned, so every
    /// request it made is already queued.
    fn assert_no_more_requests(&mut self) {
        if let Some(Some((request, _))) = self.handle.next_request().now_or_never() {
            panic!(
                "an unexpected request: {} {}",
                request.method(),
                request.uri().path()
            );
        }
    }
}

/// The answer of a status write: the object as the apiserver would return it.
pub fn object(kind: &str, namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "arca.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "42"}, "spec": {}})
}

/// The answer of an Event's creation.
pub fn event_created(namespace: &str) -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": namespace}, "eventTime": null,
        "reportingController": "arca", "reportingInstance": "test"})
}

/// The path of the Events of `namespace`.
pub fn events_path(namespace: &str) -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events")
}
