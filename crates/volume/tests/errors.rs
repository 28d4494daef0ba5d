//! What the user sees when the repository cannot be used.

mod common;

use arca_volume::{SnapshotRequest, VolumeError, VolumeRepository};
use common::{Fixture, NAMESPACE, PASSWORD, no_progress};

fn request() -> SnapshotRequest {
    SnapshotRequest {
        as_path: format!("/{NAMESPACE}/db-0/data"),
        hostname: "arca".into(),
        tags: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_names_the_secret() {
    let fx = Fixture::new();
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    assert!(repo.ensure_initialized().await.expect("init"));

    let wrong = VolumeRepository::new(fx.store.clone(), NAMESPACE, "not the password".into());
    // The repository exists: nothing is created over it, whatever the password.
    assert!(!wrong.ensure_initialized().await.expect("exists"));
    let err = wrong.snapshots().await.expect_err("wrong password");
    assert!(matches!(err, VolumeError::WrongPassword { .. }), "{err:?}");
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.contains("Secret `arca-repo-credentials` key `repository-password`"),
        "{message}"
    );
    let source = fx.folder("src");
    let err = wrong
        .backup(&source, &request(), no_progress())
        .await
        .expect_err("wrong password");
    assert!(matches!(err, VolumeError::WrongPassword { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_repository_or_snapshot_says_so() {
    let fx = Fixture::new();
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    let source = fx.folder("src");
    let err = repo
        .backup(&source, &request(), no_progress())
        .await
        .expect_err("no repository");
    assert!(matches!(err, VolumeError::NotInitialized { .. }), "{err:?}");
    assert!(err.to_string().contains("volumes/shop"), "{err}");

    repo.ensure_initialized().await.expect("init");
    let err = repo
        .restore(&"ab".repeat(32), &source, no_progress())
        .await
        .expect_err("no snapshot");
    assert!(
        matches!(err, VolumeError::SnapshotNotFound { .. }),
        "{err:?}"
    );

    let err = repo
        .backup(&fx.dir.path().join("absent"), &request(), no_progress())
        .await
        .expect_err("no folder");
    assert!(
        err.to_string().contains("mounted into the data mover"),
        "{err}"
    );

    let relative = SnapshotRequest {
        as_path: "shop/../etc".into(),
        ..request()
    };
    let err = repo
        .backup(&source, &relative, no_progress())
        .await
        .expect_err("bad path");
    assert!(matches!(err, VolumeError::InvalidRequest(_)), "{err:?}");

    let err = repo
        .forget(&["latest".into()])
        .await
        .expect_err("not an id");
    assert!(matches!(err, VolumeError::InvalidRequest(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_repository_lives_under_its_root() {
    let fx = Fixture::new();
    let repo = VolumeRepository::at_root(
        fx.store.clone(),
        "tenants/shop/volumes/shop",
        PASSWORD.into(),
    );
    assert_eq!(repo.root(), "tenants/shop/volumes/shop/");
    repo.ensure_initialized().await.expect("init");
    assert!(
        fx.dir
            .path()
            .join("objects/bucket/cluster-a/tenants/shop/volumes/shop/config")
            .is_file()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_failure_during_restore_is_an_error_with_the_stores_message() {
    let fx = Fixture::new();
    let repo = VolumeRepository::new(fx.store.clone(), NAMESPACE, PASSWORD.into());
    repo.ensure_initialized().await.expect("init");
    let source = fx.folder("src");
    let mut data = vec![0u8; 1 << 20];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut data);
    std::fs::write(source.join("data.bin"), &data).expect("write");
    let summary = repo
        .backup(&source, &request(), no_progress())
        .await
        .expect("backup");
    // Lose the data packs (trees are in their own packs, which stay).
    let packs = fx.store.list("volumes/shop/data/").await.expect("list");
    for pack in packs.iter().filter(|p| p.size > 512 << 10) {
        fx.store.delete(&pack.key).await.expect("delete");
    }
    let dest = fx.folder("dest");
    let err = repo
        .restore(&summary.id, &dest, no_progress())
        .await
        .expect_err("packs are gone");
    let message = err.to_string();
    println!("{message}");
    // Arca's restore reports the store's failure (rustic's restorer panicked on it).
    assert!(matches!(err, VolumeError::Repository { .. }), "{err:?}");
    assert!(message.contains("Check the store"), "{message}");
    assert!(
        message.contains("no object at volumes/shop/data/"),
        "{message}"
    );
}
