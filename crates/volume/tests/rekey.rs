//! Re-keying a repository from the shared password to its own: the migration of
//! repositories made before each had its own password.

mod common;

use std::sync::Arc;

use arca_store::ObjectStore;
use arca_volume::{Rekey, SnapshotRequest, VolumeError, VolumeRepository};
use common::{Fixture, NAMESPACE, no_progress};

const SHARED: &str = "the installation's shared password";
const OWN: &str = "this repository's own password";

fn repo(fx: &Fixture, password: &str) -> VolumeRepository {
    VolumeRepository::new(fx.store.clone(), NAMESPACE, password.into())
}

/// The key files in the repository.
async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(&format!("volumes/{NAMESPACE}/keys/"))
        .await
        .expect("list keys")
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys
}

/// A repository made the old way (shared password) holding one snapshot.
async fn legacy_repository(fx: &Fixture) -> String {
    let shared = repo(fx, SHARED);
    assert!(shared.ensure_initialized().await.expect("init"));
    let source = fx.folder("src");
    std::fs::write(source.join("data.txt"), b"kept across the re-keying").expect("write");
    let request = SnapshotRequest {
        as_path: format!("/{NAMESPACE}/pvc/data"),
        hostname: "arca".into(),
        tags: Vec::new(),
    };
    shared
        .backup(&source, &request, no_progress())
        .await
        .expect("backup")
        .id
}

async fn refused(repo: &VolumeRepository) {
    let err = repo.snapshots().await.expect_err("must not open");
    assert!(matches!(err, VolumeError::WrongPassword { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_password_repository_is_rekeyed_to_its_own_password() {
    let fx = Fixture::new();
    let snapshot = legacy_repository(&fx).await;
    refused(&repo(&fx, OWN)).await;
    let before = keys(&fx.store).await;
    assert_eq!(before.len(), 1, "{before:?}");

    let outcome = repo(&fx, OWN)
        .retire_password(SHARED.into())
        .await
        .expect("rekey");
    assert_eq!(
        outcome,
        Rekey {
            key_added: true,
            keys_removed: 1
        }
    );

    // Its own password opens it and finds the data; the shared one no longer does.
    let snapshots = repo(&fx, OWN)
        .snapshots()
        .await
        .expect("own password opens");
    assert_eq!(
        snapshots.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![snapshot]
    );
    refused(&repo(&fx, SHARED)).await;
    let after = keys(&fx.store).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the shared password's key is gone");

    // Running it again changes nothing.
    let again = repo(&fx, OWN)
        .retire_password(SHARED.into())
        .await
        .expect("rekey again");
    assert_eq!(again, Rekey::default());
    assert!(!again.changed());
    assert_eq!(keys(&fx.store).await, after);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_adding_and_deleting_is_finished_by_the_next_run() {
    let fx = Fixture::new();
    legacy_repository(&fx).await;
    let shared_key = keys(&fx.store).await;

    // The crash: the own key was added, the shared one not yet deleted.
    add_key_only(&fx).await;
    assert_eq!(keys(&fx.store).await.len(), 2);
    // Both open it meanwhile: a data mover with either password keeps working.
    repo(&fx, OWN)
        .snapshots()
        .await
        .expect("own password opens");
    repo(&fx, SHARED)
        .snapshots()
        .await
        .expect("shared password opens");

    let outcome = repo(&fx, OWN)
        .retire_password(SHARED.into())
        .await
        .expect("finish");
    assert_eq!(
        outcome,
        Rekey {
            key_added: false,
            keys_removed: 1
        }
    );
    let left = keys(&fx.store).await;
    assert_eq!(left.len(), 1);
    assert!(!left.contains(&shared_key[0]), "{left:?}");
    repo(&fx, OWN)
        .snapshots()
        .await
        .expect("own password opens");
    refused(&repo(&fx, SHARED)).await;
}

/// Adds a key for [`OWN`] to the repository, opened with [`SHARED`], and nothing else: the
/// first half of a re-keying, as `restic key add` does it.
async fn add_key_only(fx: &Fixture) {
    let password_file = fx.dir.path().join("own-password");
    std::fs::write(&password_file, OWN).expect("write password file");
    let shared_file = fx.dir.path().join("shared-password");
    std::fs::write(&shared_file, SHARED).expect("write password file");
    let out = std::process::Command::new("restic")
        .arg("-r")
        .arg(fx.repository_dir())
        .arg("--password-file")
        .arg(&shared_file)
        .args(["key", "add", "--new-password-file"])
        .arg(&password_file)
        .output()
        .expect("run restic");
    assert!(
        out.status.success(),
        "restic key add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_fall_back_to_the_shared_password_until_the_repository_is_rekeyed() {
    let fx = Fixture::new();
    legacy_repository(&fx).await;
    let reader = repo(&fx, OWN).with_fallback_password(SHARED.into());
    assert_eq!(reader.snapshots().await.expect("fallback opens").len(), 1);
    // A wrong fallback is still refused, naming the Secret.
    let err = repo(&fx, OWN)
        .with_fallback_password("neither".into())
        .snapshots()
        .await
        .expect_err("neither opens");
    assert!(err.to_string().contains("arca-repo-credentials"), "{err}");

    repo(&fx, OWN)
        .retire_password(SHARED.into())
        .await
        .expect("rekey");
    // After the re-keying the reader opens with its own password.
    assert_eq!(reader.snapshots().await.expect("own opens").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_repository_needs_no_rekeying_and_a_stranger_cannot_rekey() {
    let fx = Fixture::new();
    assert!(repo(&fx, OWN).ensure_initialized().await.expect("init"));
    let before = keys(&fx.store).await;
    let outcome = repo(&fx, OWN)
        .retire_password(SHARED.into())
        .await
        .expect("nothing to do");
    assert_eq!(outcome, Rekey::default());
    assert_eq!(keys(&fx.store).await, before);
    refused(&repo(&fx, SHARED)).await;

    // Neither password opens it: refused, nothing written.
    let err = repo(&fx, "a stranger")
        .retire_password("another stranger".into())
        .await
        .expect_err("neither opens");
    assert!(matches!(err, VolumeError::WrongPassword { .. }), "{err:?}");
    assert_eq!(keys(&fx.store).await, before);

    // No repository: says so.
    let empty = Fixture::new();
    let err = repo(&empty, OWN)
        .retire_password(SHARED.into())
        .await
        .expect_err("no repository");
    assert!(matches!(err, VolumeError::NotInitialized { .. }), "{err:?}");
}

/// A password's master key, cached by a long-lived process, opens the repository only
/// while the password's key file is there: once re-keying removed it, the cache opens
/// nothing, and a repository made anew at the same place is opened by its password.
#[tokio::test(flavor = "multi_thread")]
async fn a_cached_key_opens_only_while_its_key_file_is_there() {
    let fx = Fixture::new();
    let snapshot = legacy_repository(&fx).await;
    let cache = Arc::new(arca_volume::KeyCache::default());
    let shared = || repo(&fx, SHARED).with_key_cache(cache.clone());

    assert_eq!(shared().snapshots().await.expect("opens").len(), 1);
    assert_eq!(cache.len(), 1, "the password's master key is kept");
    assert_eq!(
        shared().snapshots().await.expect("opens from the cache")[0].id,
        snapshot
    );

    // Another password finds no entry of its own.
    refused(&repo(&fx, OWN).with_key_cache(cache.clone())).await;

    // Re-keyed to its own password: the shared password's key file is gone, and the cached
    // master key of that password no longer opens the repository.
    repo(&fx, OWN)
        .with_key_cache(cache.clone())
        .retire_password(SHARED.into())
        .await
        .expect("rekey");
    refused(&shared()).await;
    assert_eq!(cache.len(), 0, "the stale entry is dropped");

    // A repository made anew at the same place, with the same password: another master key.
    let own = || repo(&fx, OWN).with_key_cache(cache.clone());
    assert_eq!(own().snapshots().await.expect("opens").len(), 1);
    for object in fx
        .store
        .list(&format!("volumes/{NAMESPACE}/"))
        .await
        .expect("list")
    {
        fx.store.delete(&object.key).await.expect("delete");
    }
    assert!(repo(&fx, OWN).ensure_initialized().await.expect("init"));
    assert!(
        own()
            .snapshots()
            .await
            .expect("opens the new one")
            .is_empty()
    );
}
