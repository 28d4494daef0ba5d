//! Writing one item: create, or handle what already exists per `existingResourcePolicy`;
//! with `dryRun=All` when nothing may be written.

use arca_api::ExistingResourcePolicy;
use kube::{
    Client,
    api::{GetParams, PostParams},
    core::Request,
};
use serde::Serialize;
use serde_json::Value;

/// The field manager of every object a restore writes.
pub const FIELD_MANAGER: &str = "arca-restore";

/// What happened to an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Existing,
    Skipped,
    Failed,
}

/// The outcome of one write, with what the user should know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// A warning for the results (an existing object that differs from the backup).
    pub warning: Option<String>,
    /// Failed for a dependency that may appear later (a type not served yet, a webhook not
    /// ready): worth another pass once the rest is in.
    pub retry: bool,
}

impl Applied {
    fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            reason: None,
            warning: None,
            retry: false,
        }
    }
    fn failed(reason: String, retry: bool) -> Self {
        Self {
            outcome: Outcome::Failed,
            reason: Some(reason),
            warning: None,
            retry,
        }
    }
}

/// Where an object lives in the API.
#[derive(Clone, Debug)]
pub struct Target {
    /// `/api/v1` or `/apis/<group>/<version>`, from the object's apiVersion.
    pub base: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Target {
    pub fn collection(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/namespaces/{ns}/{}", self.base, self.plural),
            None => format!("{}/{}", self.base, self.plural),
        }
    }
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.plural, self.name),
            None => format!("{} {}", self.plural, self.name),
        }
    }
}

/// Writes items into a cluster.
#[derive(Clone)]
pub struct Applier {
    pub client: Client,
    pub dry_run: bool,
    pub policy: ExistingResourcePolicy,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("dry_run", &self.dry_run)
            .field("policy", &self.policy)
            .finish()
    }
}

/// How every write of a restore is sent: as Arca's field manager, and not persisted in a
/// dry run.
fn write_params(dry_run: bool) -> PostParams {
    PostParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.into()),
    }
}

impl Applier {
    /// Creates `object`; if it exists, keeps or updates it per the policy. With
    /// `status`, the backed-up status is written to the status subresource afterwards.
    pub async fn apply(&self, target: &Target, object: &Value, status: Option<&Value>) -> Applied {
        let body = match serde_json::to_vec(object) {
            Ok(body) => body,
            Err(e) => return Applied::failed(format!("encoding: {e}"), false),
        };
        let request = Request::new(target.collection()).create(&write_params(self.dry_run), body);
        match self.send(request).await {
            Ok(created) => {
                if let (Some(status), false) = (status, self.dry_run)
                    && let Err(e) = self.write_status_text(target, &created, status).await
                {
                    let mut applied = Applied::new(Outcome::Created);
                    applied.warning = Some(format!(
                        "{}: created, but its status could not be restored: {e}",
                        target.describe()
                    ));
                    return applied;
                }
                Applied::new(Outcome::Created)
            }
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                self.existing(target, object).await
            }
            Err(e) => classify(target, e, self.dry_run),
        }
    }

    async fn existing(&self, target: &Target, object: &Value) -> Applied {
        let live: Value = match self
            .send(Request::new(target.collection()).get(&target.name, &GetParams::default()))
            .await
            .and_then(|text| serde_json::from_str(&text).map_err(kube::Error::SerdeError))
        {
            Ok(live) => live,
            Err(e) => return classify(target, e, self.dry_run),
        };
        if is_subset(object, &live, true) {
            return Applied::new(Outcome::Existing);
        }
        match self.policy {
            ExistingResourcePolicy::None => {
                let mut applied = Applied::new(Outcome::Existing);
                applied.warning = Some(format!(
                    "{} already exists and differs from the backup; kept as it is (existingResourcePolicy: none)",
                    target.describe()
                ));
                applied
            }
            ExistingResourcePolicy::Update => {
                let mut replacement = object.clone();
                if let (Some(meta), Some(rv)) = (
                    replacement
                        .get_mut("metadata")
                        .and_then(Value::as_object_mut),
                    live.pointer("/metadata/resourceVersion").cloned(),
                ) {
                    meta.insert("resourceVersion".into(), rv);
                }
                let body = match serde_json::to_vec(&replacement) {
                    Ok(body) => body,
                    Err(e) => return Applied::failed(format!("encoding: {e}"), false),
                };
                let request = Request::new(target.collection()).replace(
                    &target.name,
                    &write_params(self.dry_run),
                    body,
                );
                match self.send(request).await {
                    Ok(_) => Applied::new(Outcome::Updated),
                    Err(e) => classify(target, e, self.dry_run),
                }
            }
        }
    }

    async fn write_status_text(
        &self,
        target: &Target,
        created: &str,
        status: &Value,
    ) -> Result<(), kube::Error> {
        let created: Value = serde_json::from_str(created).map_err(kube::Error::SerdeError)?;
        self.write_status(target, &created, status).await
    }

    async fn write_status(
        &self,
        target: &Target,
        created: &Value,
        status: &Value,
    ) -> Result<(), kube::Error> {
        let mut with_status = created.clone();
        if let Some(root) = with_status.as_object_mut() {
            root.insert("status".into(), status.clone());
        }
        let body = serde_json::to_vec(&with_status).map_err(kube::Error::SerdeError)?;
        let request = Request::new(target.collection()).replace_subresource(
            "status",
            &target.name,
            &write_params(false),
            body,
        );
        self.send(request).await.map(|_| ())
    }

    /// Sends a request made by kube's request builder; returns the response body, unparsed
    /// (most callers ignore it).
    async fn send(
        &self,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<String, kube::Error> {
        let request = request.map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await
    }
}

/// Turns a refusal into an outcome; dependencies that may appear later are retried.
fn classify(target: &Target, error: kube::Error, dry_run: bool) -> Applied {
    let kube::Error::Api(status) = &error else {
        return Applied::failed(format!("{}: {error}", target.describe()), true);
    };
    let message = status.message.clone();
    let namespace_missing = status.code == 404 && message.starts_with("namespaces ");
    let type_missing =
        status.code == 404 && message.contains("could not find the requested resource");
    if dry_run && (namespace_missing || type_missing) {
        // In a dry run nothing is created, so what this item needs is not there to check against.
        return Applied {
            outcome: Outcome::Created,
            reason: Some(format!(
                "not checked by the apiserver: {message}, which this restore would create first"
            )),
            warning: None,
            retry: false,
        };
    }
    let retry = namespace_missing
        || type_missing
        || matches!(status.code, 429 | 500 | 502 | 503 | 504)
        || message.contains("failed calling webhook")
        || message.contains("is being terminated");
    Applied::failed(format!("{}: {message}", target.describe()), retry)
}

/// Whether every field of `backup` has the same value in `live` (fields only `live` has,
/// set by the cluster, do not count). At the top level, `metadata` compares only labels and
/// annotations (Arca's own labels aside) and `status` is ignored.
pub fn is_subset(backup: &Value, live: &Value, top: bool) -> bool {
    match (backup, live) {
        (Value::Object(b), Value::Object(l)) => b.iter().all(|(key, value)| {
            if top && key == "status" {
                return true;
            }
            if top && key == "metadata" {
                return ["labels", "annotations"].iter().all(|field| {
                    let mut wanted = value.get(*field).cloned().unwrap_or(Value::Null);
                    if let Some(map) = wanted.as_object_mut() {
                        map.remove(arca_api::labels::BACKUP_NAME);
                        map.remove(arca_api::labels::RESTORE_NAME);
                    }
                    let have = l
                        .get("metadata")
                        .and_then(|m| m.get(*field))
                        .cloned()
                        .unwrap_or(Value::Null);
                    wanted.is_null()
                        || wanted.as_object().is_some_and(|w| w.is_empty())
                        || is_subset(&wanted, &have, false)
                });
            }
            l.get(key)
                .is_some_and(|other| is_subset(value, other, false))
        }),
        (Value::Array(b), Value::Array(l)) => {
            b.len() == l.len() && b.iter().zip(l).all(|(x, y)| is_subset(x, y, false))
        }
        _ => backup == live,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn live_objects_may_have_more_fields_than_the_backup() {
        let backup = json!({"metadata": {"name": "s", "labels": {"app": "a", "arca.dev/restore-name": "r"}},
            "spec": {"ports": [{"port": 80}]}, "status": {"x": 1}});
        let live = json!({"metadata": {"name": "s", "uid": "u", "labels": {"app": "a"}},
            "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert!(is_subset(&backup, &live, true));
        let changed =
            json!({"metadata": {"labels": {"app": "b"}}, "spec": {"ports": [{"port": 80}]}});
        assert!(!is_subset(&backup, &changed, true), "a label differs");
        let more_ports = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"ports": [{"port": 80}, {"port": 81}]}});
        assert!(
            !is_subset(&backup, &more_ports, true),
            "lists compare whole"
        );
    }

    #[test]
    fn targets() {
        let t = Target {
            base: "/apis/apps/v1".into(),
            plural: "deployments".into(),
            namespace: Some("a".into()),
            name: "web".into(),
        };
        assert_eq!(t.collection(), "/apis/apps/v1/namespaces/a/deployments");
        let update = Request::new(t.collection())
            .replace(&t.name, &write_params(true), Vec::new())
            .expect("a request");
        assert_eq!(
            update.uri().to_string(),
            "/apis/apps/v1/namespaces/a/deployments/web?&dryRun=All&fieldManager=arca-restore"
        );
        let create = Request::new(t.collection())
            .create(&write_params(false), Vec::new())
            .expect("a request");
        assert_eq!(create.method(), http::Method::POST);
        assert_eq!(
            create.uri().to_string(),
            "/apis/apps/v1/namespaces/a/deployments?&fieldManager=arca-restore"
        );
    }
}
