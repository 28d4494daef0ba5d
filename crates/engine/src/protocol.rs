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
//! - the installation's secret, key [`REPOSITORY_PASSWORD_KEY`] of Secret
//!   [`REPOSITORY_SECRET`] in the operator's namespace ([`RepositoryPassword`]), and the
//!   password of each repository derived from it ([`derive_repository_password`]): each
//!   repository opens with its own password, not with another namespace's. Repositories
//!   made before that opened with the installation's secret itself (the "shared password");
//!   the operator re-keys them, and readers fall back to it until it has.

use arca_store::Layout;

pub use arca_api::labels::{BACKUP_NAME, BACKUP_UID, RESTORE_NAME, RESTORE_UID};

/// The Secret (in the operator's namespace) holding the volume repositories' password.
pub const REPOSITORY_SECRET: &str = "arca-repo-credentials";
/// The key of the password in [`REPOSITORY_SECRET`].
pub const REPOSITORY_PASSWORD_KEY: &str = "repository-password";
/// The Secret holding Velero's repository password (Velero's name; key
/// [`REPOSITORY_PASSWORD_KEY`], as Velero's). Arca reads it in the operator's namespace, for
/// restores of the restic data of Velero's backups.
pub const VELERO_REPOSITORY_SECRET: &str = "velero-repo-credentials";
/// The password Velero gives its repositories when that Secret does not exist at its
/// install (almost every Velero installation uses it).
pub const VELERO_DEFAULT_PASSWORD: &str = "static-passw0rd";

/// A volume repository password: the installation's secret (Secret [`REPOSITORY_SECRET`]),
/// or a repository's own password derived from it ([`derive_repository_password`]). Its
/// `Debug` never shows it.
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

/// What the HMAC of a repository's own password signs before the repository's root: names
/// the purpose and its version, so the same secret never yields the same bytes for anything
/// else.
const REPOSITORY_PASSWORD_LABEL: &str = "arca volume repository v1\n";

/// The own password of the repository at `repository`: the lowercase hex of
/// HMAC-SHA256(key = the bytes of the installation's secret, message = `"arca volume
/// repository v1\n"` followed by the repository's root as [`RepositoryId`] spells it,
/// `volumes/shop/` or `tenants/t1/volumes/t1/`). 64 characters.
///
/// Whoever holds the installation's secret can derive every repository's password (that
/// is what lets the operator and the agents work without a Secret per namespace); one
/// repository's password opens no other repository.
pub fn derive_repository_password(
    installation: &RepositoryPassword,
    repository: &RepositoryId,
) -> RepositoryPassword {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(installation.reveal().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(REPOSITORY_PASSWORD_LABEL.as_bytes());
    mac.update(repository.to_string().as_bytes());
    RepositoryPassword::new(hex::encode(mac.finalize().into_bytes()))
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
    place: Place,
}

/// Where a namespace's repository is in its location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Arca's, at the top of the location: `volumes/<namespace>/`.
    Top,
    /// Arca's, in the namespace's tenant folder of the operator's location.
    TenantFolder,
    /// Velero's restic repository (Velero before 1.15 copied files with restic):
    /// `restic/<namespace>/`, read only, opened with Velero's repository password.
    VeleroRestic,
}

/// A `repoIdentifier` that is not a volume repository.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "repoIdentifier {0:?} is not a volume repository (volumes/<namespace>/, tenants/<namespace>/volumes/<namespace>/, or Velero's restic/<namespace>/): the work item was not made by Arca's operator"
)]
pub struct NotARepository(pub String);

impl RepositoryId {
    /// The repository of `namespace` at the top of its location (an admin's location, or
    /// the tenant's own).
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            place: Place::Top,
        }
    }

    /// The repository of `namespace` in its tenant folder of the operator's location.
    pub fn in_tenant_folder(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            place: Place::TenantFolder,
        }
    }

    /// Velero's restic repository of `namespace` (`restic/<namespace>/` under a Velero
    /// location's prefix): Arca only restores from it.
    pub fn velero_restic(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            place: Place::VeleroRestic,
        }
    }

    /// The namespace whose volumes the repository holds.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether it is Velero's (opened with Velero's repository password, never written).
    pub fn is_velero(&self) -> bool {
        self.place == Place::VeleroRestic
    }

    /// The tag every snapshot of the namespace's volumes carries in this repository:
    /// `namespace=<ns>` (Arca's), `ns=<ns>` (Velero's). A snapshot without it is not the
    /// namespace's, and is never restored from this repository.
    pub fn namespace_tag(&self) -> String {
        match self.place {
            Place::VeleroRestic => format!("ns={}", self.namespace),
            Place::Top | Place::TenantFolder => format!("namespace={}", self.namespace),
        }
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
            ["restic", ns] => Self::velero_restic(ns),
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
        match self.place {
            Place::Top => f.write_str(&Layout::volume_repository(&self.namespace)),
            Place::TenantFolder => write!(
                f,
                "{}/{}",
                Layout::tenant_root(&self.namespace),
                Layout::volume_repository(&self.namespace)
            ),
            Place::VeleroRestic => write!(f, "restic/{}/", self.namespace),
        }
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
    fn each_repository_has_its_own_derived_password() {
        let secret = RepositoryPassword::new("a".repeat(64));
        let shop = derive_repository_password(&secret, &RepositoryId::new("shop"));
        // Deterministic: the operator and every agent derive the same password.
        assert_eq!(
            shop,
            derive_repository_password(&secret, &RepositoryId::new("shop"))
        );
        assert_eq!(shop.reveal().len(), 64);
        assert!(shop.reveal().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(shop, secret);
        for other in [
            RepositoryId::new("bank"),
            RepositoryId::in_tenant_folder("shop"),
        ] {
            assert_ne!(shop, derive_repository_password(&secret, &other), "{other}");
        }
        // Another installation's secret gives another password.
        let elsewhere = RepositoryPassword::new("b".repeat(64));
        assert_ne!(
            shop,
            derive_repository_password(&elsewhere, &RepositoryId::new("shop"))
        );
        assert!(!format!("{shop:?}").contains(shop.reveal()));
    }

    #[test]
    fn the_derived_password_is_hmac_sha256_of_label_and_root() {
        // Computed independently:
        // printf 'arca volume repository v1\nvolumes/shop/' | openssl dgst -sha256 -hmac s3cret
        let derived = derive_repository_password(
            &RepositoryPassword::new("s3cret".into()),
            &RepositoryId::new("shop"),
        );
        assert_eq!(
            derived.reveal(),
            "4b3eb425b5293f268074a16033ef3b392484439c8c21cc8492c14932d96f64a5"
        );
    }

    #[test]
    fn repository_ids_are_written_and_read_back() {
        for id in [
            RepositoryId::new("shop"),
            RepositoryId::in_tenant_folder("shop"),
            RepositoryId::velero_restic("shop"),
        ] {
            assert_eq!(RepositoryId::parse(&id.to_string()), Ok(id.clone()));
            assert_eq!(id.namespace(), "shop");
        }
        assert_eq!(
            RepositoryId::velero_restic("shop").to_string(),
            "restic/shop/"
        );
        assert!(RepositoryId::velero_restic("shop").is_velero());
        assert!(!RepositoryId::new("shop").is_velero());
        // Velero tags its snapshots `ns=<namespace>`, Arca `namespace=<namespace>`.
        assert_eq!(
            RepositoryId::velero_restic("shop").namespace_tag(),
            "ns=shop"
        );
        assert_eq!(RepositoryId::new("shop").namespace_tag(), "namespace=shop");
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
            "restic/shop/data/",
            "restic/../volumes/shop/",
            "kopia/shop/",
            "",
        ] {
            let refused = RepositoryId::parse(hostile).expect_err(hostile);
            assert!(refused.to_string().contains("not a volume repository"));
        }
    }
}
