//! The protocol between the operator and the node agents, in one place.
//!
//! The operator (this crate's [`crate::pod_volumes`]) asks for volume data to be moved by
//! creating work items, `PodVolumeBackup`s and `PodVolumeRestore`s, in its own namespace;
//! the agent of the pod's node (crate `arca-agent`) takes them, moves the data and writes
//! their status. What both sides must agree on:
//!
//! - the work items' names ([`work_item_name`]) and labels ([`BACKUP_NAME`], [`BACKUP_UID`],
//!   [`RESTORE_NAME`], [`RESTORE_UID`]: the run's name and uid, which select its items);
//! - where a namespace's repository is ([`RepositoryId`], `repoIdentifier` in a work item,
//!   relative to the location's prefix: `volumes/<ns>/`, or `tenants/<ns>/volumes/<ns>/`
//!   for a tenant writing to the operator's location);
//! - the password every repository opens with: key [`REPOSITORY_PASSWORD_KEY`] of Secret
//!   [`REPOSITORY_SECRET`] in the operator's namespace ([`RepositoryPassword`]).

use arca_store::Layout;

pub use arca_api::labels::{BACKUP_NAME, BACKUP_UID, RESTORE_NAME, RESTORE_UID};

/// The Secret (in the operator's namespace) holding the volume repositories' password.
pub const REPOSITORY_SECRET: &str = "arca-repo-credentials";
/// The key of the password in [`REPOSITORY_SECRET`].
pub const REPOSITORY_PASSWORD_KEY: &str = "repository-password";

/// The password of the volume repositories. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RepositoryPassword(String);

impl RepositoryPassword {
    pub fn new(password: String) -> Self {
        Self(password)
    }
    /// The password itself: only for opening a repository.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RepositoryPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepositoryPassword(<redacted>)")
    }
}

/// A name for a work item of run `run`: the run's name, shortened, and a hash of what it
/// moves (`parts`), so a retried run makes the same names and two volumes never share one.
pub fn work_item_name(run: &str, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let hash = hex::encode(&hasher.finalize()[..5]);
    let mut prefix: String = run.chars().take(50).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}-{hash}")
}

/// The repository of one namespace's volumes, as a work item names it (`repoIdentifier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryId {
    namespace: String,
    /// In the namespace's tenant folder of the operator's location.
    tenant_folder: bool,
}

/// A `repoIdentifier` that is not a volume repository.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "repoIdentifier {0:?} is not a volume repository (volumes/<namespace>/, or tenants/<namespace>/volumes/<namespace>/): the work item was not made by Arca's operator"
)]
pub struct NotARepository(pub String);

impl RepositoryId {
    /// The repository of `namespace` at the top of its location (an admin's location, or
    /// the tenant's own).
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            tenant_folder: false,
        }
    }

    /// The repository of `namespace` in its tenant folder of the operator's location.
    pub fn in_tenant_folder(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            tenant_folder: true,
        }
    }

    /// The namespace whose volumes the repository holds.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Reads a `repoIdentifier`; anything but the two shapes above, a tenant folder of
    /// another namespace, or `.`/`..` segments is refused.
    pub fn parse(text: &str) -> Result<Self, NotARepository> {
        let refuse = || NotARepository(text.to_string());
        let parts: Vec<&str> = text.strip_suffix('/').unwrap_or(text).split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(refuse());
        }
        let id = match parts.as_slice() {
            ["volumes", ns] => Self::new(ns),
            ["tenants", tenant, "volumes", ns] if tenant == ns => Self::in_tenant_folder(ns),
            _ => return Err(refuse()),
        };
        // Exactly the spelling this type writes: nothing else is a repository.
        if id.to_string().trim_end_matches('/') == text.trim_end_matches('/') {
            Ok(id)
        } else {
            Err(refuse())
        }
    }
}

impl std::fmt::Display for RepositoryId {
    /// The key prefix relative to the location's prefix, with a trailing `/`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tenant_folder {
            write!(f, "{}/", Layout::tenant_root(&self.namespace))?;
        }
        f.write_str(&Layout::volume_repository(&self.namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_are_short_stable_and_distinct() {
        let long = "b".repeat(200);
        let a = work_item_name(&long, &["ns", "pod", "data"]);
        assert!(a.len() <= 61, "{a}");
        assert_eq!(a, work_item_name(&long, &["ns", "pod", "data"]));
        assert_ne!(a, work_item_name(&long, &["ns", "pod", "logs"]));
        assert_ne!(
            work_item_name("x", &["a", "bc"]),
            work_item_name("x", &["ab", "c"])
        );
    }

    #[test]
    fn the_password_is_never_in_debug_output() {
        let p = RepositoryPassword::new("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(p.reveal(), "hunter2");
    }

    #[test]
    fn repository_ids_are_written_and_read_back() {
        for id in [
            RepositoryId::new("shop"),
            RepositoryId::in_tenant_folder("shop"),
        ] {
            assert_eq!(RepositoryId::parse(&id.to_string()), Ok(id.clone()));
            assert_eq!(id.namespace(), "shop");
        }
        assert_eq!(RepositoryId::new("shop").to_string(), "volumes/shop/");
        assert_eq!(
            RepositoryId::in_tenant_folder("shop").to_string(),
            "tenants/shop/volumes/shop/"
        );
        assert_eq!(
            RepositoryId::parse("volumes/shop"),
            Ok(RepositoryId::new("shop"))
        );
    }

    #[test]
    fn only_volume_repositories_are_accepted() {
        for hostile in [
            "tenants/shop/volumes/bank/",
            "backups/x/",
            "volumes/../backups/",
            "volumes/./",
            "volumes//",
            "/volumes/shop/",
            "volumes/shop/data/",
            "",
        ] {
            let refused = RepositoryId::parse(hostile).expect_err(hostile);
            assert!(refused.to_string().contains("not a volume repository"));
        }
    }
}
