//! The tarball reader against tarballs as Velero writes them and as a bucket writer might:
//! every hostile case is refused with an error that names it.

mod common;

use std::ops::ControlFlow;

use arca_velero::{Entry, Limits, TarballSummary, VeleroError, VeleroItem, read_tarball};
use common::*;
use serde_json::json;

const KEY: &str = "backups/b1/b1.tar.gz";

/// Reads `bytes` whole: the entries, then the summary or the fatal error.
fn read(bytes: &[u8], limits: &Limits) -> (Vec<Entry>, Result<TarballSummary, VeleroError>) {
    let mut entries = Vec::new();
    let result = read_tarball(bytes, KEY, "b1", limits, |e| {
        entries.push(e);
        ControlFlow::Continue(())
    });
    (entries, result)
}

fn items(entries: &[Entry]) -> Vec<&VeleroItem> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Item(i) => Some(i),
            Entry::Refused(_) => None,
        })
        .collect()
}

fn refusals(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Refused(r) => Some(format!("{}: {}", r.path, r.reason)),
            Entry::Item(_) => None,
        })
        .collect()
}

/// The fatal error of a read that must fail, as text.
fn fatal(bytes: &[u8], limits: &Limits) -> (VeleroError, String) {
    match read(bytes, limits).1 {
        Ok(summary) => panic!("read succeeded: {summary:?}"),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

#[test]
fn each_item_is_read_once_from_its_preferred_version_copy() -> Result<(), VeleroError> {
    let (entries, summary) = read(&velero_tarball(), &Limits::default());
    let summary = summary?;
    assert!(refusals(&entries).is_empty(), "{:?}", refusals(&entries));
    let found: Vec<String> = items(&entries)
        .iter()
        .map(|i| {
            format!(
                "{} {} {} {}/{}",
                i.group_resource(),
                i.version,
                i.kind,
                i.namespace.as_deref().unwrap_or("-"),
                i.name
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            "configmaps v1 ConfigMap shop/settings",
            "deployments.apps v1 Deployment shop/web",
            "customresourcedefinitions.apiextensions.k8s.io v1 CustomResourceDefinition -/widgets.example.com",
            "widgets.example.com v1 Widget shop/blue",
            "horizontalpodautoscalers.autoscaling v2 HorizontalPodAutoscaler shop/web",
        ]
    );
    assert_eq!(summary.format_version, "1.1.0");
    assert_eq!(summary.items, 5);
    assert_eq!(summary.legacy_copies, 5);
    assert_eq!(summary.other_version_copies, 1);
    assert_eq!(
        summary
            .other_versions
            .get("horizontalpodautoscalers.autoscaling")
            .map(|v| v.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["v1".to_string()])
    );
    assert_eq!(summary.ignored, 0);
    assert!(summary.decompressed_bytes > summary.compressed_bytes);

    // The JSON is Velero's, byte for byte; the index entry is what Arca's restore takes.
    let web = items(&entries)[1].clone();
    let value: serde_json::Value = serde_json::from_slice(&web.json).expect("json");
    assert_eq!(value, object("apps/v1", "Deployment", Some("shop"), "web"));
    let entry = web.index_entry();
    assert_eq!(entry.group_resource(), "deployments.apps");
    assert_eq!(
        entry.path,
        "resources/deployments.apps/v1-preferredversion/namespaces/shop/web.json"
    );
    assert_eq!(entry.size, web.json.len() as u64);
    assert_eq!(entry.sha256.len(), 64);
    let archived = web.into_archive_item();
    assert_eq!(
        (archived.kind.as_str(), archived.version.as_str()),
        ("Deployment", "v1")
    );
    Ok(())
}

#[test]
fn a_gzip_bomb_is_refused_naming_the_limit() {
    // 64 MiB of zeros in entries of 1 MiB (each under the item limit), a few KB compressed.
    let mut entries = vec![version("1.1.0")];
    for i in 0..64 {
        entries.push(file(&format!("padding/{i}"), vec![0u8; 1024 * 1024]));
    }
    let bomb = tarball(&entries);
    assert!(bomb.len() < 512 * 1024, "the bomb is small: {}", bomb.len());
    let limits = Limits {
        tarball_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let (e, text) = fatal(&bomb, &limits);
    assert!(
        matches!(e, VeleroError::TooLarge { limit, .. } if limit == 8 * 1024 * 1024),
        "{e:?}"
    );
    assert!(text.contains("the decompressed tarball"), "{text}");
    assert!(
        text.contains("exceeds the limit of 8388608 bytes"),
        "{text}"
    );
    assert!(text.contains("decompression bomb"), "{text}");
}

#[test]
fn an_entry_over_the_item_limit_is_refused_before_it_is_read() {
    // The header claims 10 GiB; the data is not there: refused from the header alone.
    let mut huge = file(
        "resources/configmaps/v1-preferredversion/namespaces/a/big.json",
        Vec::new(),
    );
    huge.claimed_size = Some(10 * 1024 * 1024 * 1024);
    let (e, text) = fatal(&tarball(&[version("1.1.0"), huge]), &Limits::default());
    assert!(matches!(e, VeleroError::TooLarge { .. }), "{e:?}");
    assert!(text.contains("claims 10737418240 bytes"), "{text}");
    // A real 2 MiB item under a 1 MiB limit.
    let limits = Limits {
        item_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let mut big = object("v1", "ConfigMap", Some("a"), "big");
    big["data"] = json!({"blob": "x".repeat(2 * 1024 * 1024)});
    let mut entries = vec![version("1.1.0")];
    entries.extend(velero_item("configmaps", "v1", Some("a"), "big", &big));
    let (e, _) = fatal(&tarball(&entries), &limits);
    assert!(
        matches!(e, VeleroError::TooLarge { limit: 1048576, .. }),
        "{e:?}"
    );
}

#[test]
fn unsafe_paths_are_refused() {
    let good = serde_json::to_vec(&object("v1", "ConfigMap", Some("a"), "x")).expect("json");
    for (name, says) in [
        (&b"/etc/cron.d/evil"[..], "its path is absolute"),
        (b"resources/../../etc/passwd", "\"..\" segment"),
        (
            b"resources/configmaps/v1-preferredversion/namespaces/a/../x.json",
            "\"..\" segment",
        ),
        (b"resources/configmaps//x.json", "empty segment"),
        (
            b"resources/configmaps/namespaces/a/\xff\xfe.json",
            "not UTF-8",
        ),
        (
            b"resources/configmaps/namespaces/a/x\x1b.json",
            "control characters",
        ),
        (
            b"resources/Config_Maps/namespaces/a/x.json",
            "is not a resource name",
        ),
        (
            b"resources/configmaps/v1-preferredversion/namespaces/A_B/x.json",
            "is not a namespace name",
        ),
    ] {
        let bytes = tarball(&[version("1.1.0"), raw(name, tar::EntryType::Regular, &good)]);
        let (e, text) = fatal(&bytes, &Limits::default());
        assert!(matches!(e, VeleroError::Hostile { .. }), "{e:?}");
        assert!(
            text.contains(says),
            "{}: {text}",
            String::from_utf8_lossy(name)
        );
        assert!(text.contains("nothing after it was read"), "{text}");
    }
}

#[test]
fn links_devices_and_fifos_are_refused() {
    for (kind, says) in [
        (tar::EntryType::Symlink, "a symbolic link"),
        (tar::EntryType::Link, "a hard link"),
        (tar::EntryType::Char, "a character device"),
        (tar::EntryType::Block, "a block device"),
        (tar::EntryType::Fifo, "a FIFO"),
    ] {
        let bytes = tarball(&[
            version("1.1.0"),
            raw(
                b"resources/configmaps/v1-preferredversion/namespaces/a/x.json",
                kind,
                b"",
            ),
        ]);
        let (e, text) = fatal(&bytes, &Limits::default());
        assert!(matches!(e, VeleroError::Hostile { .. }), "{e:?}");
        assert!(text.contains(says), "{text}");
    }
}

#[test]
fn items_that_disagree_with_their_path_are_refused_and_the_read_goes_on() -> Result<(), VeleroError>
{
    let p = |gr: &str, ns: Option<&str>, name: &str| match ns {
        Some(ns) => format!("resources/{gr}/v1-preferredversion/namespaces/{ns}/{name}.json"),
        None => format!("resources/{gr}/v1-preferredversion/cluster/{name}.json"),
    };
    let j = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
    let entries = vec![
        version("1.1.0"),
        // A ClusterRoleBinding to cluster-admin dressed as a ConfigMap.
        file(
            &p("configmaps", Some("a"), "x"),
            j(object("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", Some("a"), "x")),
        ),
        file(
            &p("configmaps", Some("a"), "y"),
            j(object("v1", "Secret", Some("a"), "y")),
        ),
        file(
            &p("configmaps", Some("a"), "z"),
            j(object("v1", "ConfigMap", Some("a"), "other-name")),
        ),
        file(
            &p("configmaps", Some("a"), "w"),
            j(object("v1", "ConfigMap", Some("kube-system"), "w")),
        ),
        file(
            &p("configmaps", Some("a"), "u"),
            j(object("v1", "ConfigMap", None, "u")),
        ),
        file(
            &p("clusterroles.rbac.authorization.k8s.io", None, "r"),
            j(object("rbac.authorization.k8s.io/v1", "ClusterRole", Some("a"), "r")),
        ),
        file(&p("configmaps", Some("a"), "t"), b"not json".to_vec()),
        file(&p("configmaps", Some("a"), "s"), b"[1,2,3]".to_vec()),
        file(
            &p("configmaps", Some("a"), "d"),
            br#"{"apiVersion":"v1","kind":"ConfigMap","kind":"Secret","metadata":{"name":"d","namespace":"a"}}"#.to_vec(),
        ),
        file(
            &p("configmaps", Some("a"), "good"),
            j(object("v1", "ConfigMap", Some("a"), "good")),
        ),
        // The same item again, changed: the first copy stands.
        file(
            &p("configmaps", Some("a"), "good"),
            j(object("v1", "ConfigMap", Some("a"), "good")),
        ),
    ];
    let (found, summary) = read(&tarball(&entries), &Limits::default());
    let summary = summary?;
    let refused = refusals(&found);
    let expected = [
        "its apiVersion is \"rbac.authorization.k8s.io/v1\", its path says \"v1\"",
        "its kind \"Secret\" is not the kind of resource \"configmaps\"",
        "its metadata.name is \"other-name\", its path says \"z\"",
        "its metadata.namespace is \"kube-system\", its path says \"a\"",
        "it has no metadata.namespace, its path says \"a\"",
        "its metadata.namespace is \"a\", its path says it is cluster-scoped",
        "it is not a Kubernetes object in JSON",
        "it is not a Kubernetes object in JSON",
        "duplicate field `kind`",
        "a second copy of configmaps a/good in the tarball",
    ];
    assert_eq!(refused.len(), expected.len(), "{refused:#?}");
    for (got, want) in refused.iter().zip(expected) {
        assert!(got.contains(want), "{got} should say {want}");
    }
    let read_items = items(&found);
    assert_eq!(read_items.len(), 1);
    assert_eq!(read_items[0].name, "good");
    assert_eq!((summary.items, summary.refused), (1, 10));
    Ok(())
}

#[test]
fn unknown_format_versions_are_named() {
    for v in ["2.0.0", "1", "1.0.0"] {
        let (e, text) = fatal(&tarball(&[version(v)]), &Limits::default());
        assert!(matches!(e, VeleroError::UnknownFormat { .. }), "{e:?}");
        assert!(text.contains(&format!("tarball format \"{v}\"")), "{text}");
        assert!(text.contains("it reads 1.1.0"), "{text}");
    }
    let (_, text) = fatal(
        &tarball(&[file("metadata/version", vec![b'9'; 100])]),
        &Limits::default(),
    );
    assert!(text.contains("tarball format \"9999"), "{text}");
}

#[test]
fn the_version_comes_first_and_once() {
    let mut entries = velero_item(
        "configmaps",
        "v1",
        Some("a"),
        "x",
        &object("v1", "ConfigMap", Some("a"), "x"),
    );
    entries.push(version("1.1.0"));
    let (e, text) = fatal(&tarball(&entries), &Limits::default());
    assert!(matches!(e, VeleroError::Hostile { .. }), "{e:?}");
    assert!(text.contains("an item before metadata/version"), "{text}");

    let (_, text) = fatal(
        &tarball(&[version("1.1.0"), version("1.1.0")]),
        &Limits::default(),
    );
    assert!(text.contains("a second metadata/version"), "{text}");

    let (e, text) = fatal(&tarball(&[file("other", "x")]), &Limits::default());
    assert!(matches!(e, VeleroError::Corrupt { .. }), "{e:?}");
    assert!(text.contains("no metadata/version"), "{text}");
}

#[test]
fn what_is_not_gzip_or_tar_is_damaged() {
    let (e, text) = fatal(b"PK\x03\x04 a zip file", &Limits::default());
    assert!(matches!(e, VeleroError::Corrupt { .. }), "{e:?}");
    assert!(text.contains("is damaged"), "{text}");
    let mut cut = velero_tarball();
    cut.truncate(cut.len() / 2);
    let (e, _) = fatal(&cut, &Limits::default());
    assert!(matches!(e, VeleroError::Corrupt { .. }), "{e:?}");
}

#[test]
fn unknown_entries_are_counted_not_read() -> Result<(), VeleroError> {
    let entries = vec![
        version("1.1.0"),
        raw(b"resources/", tar::EntryType::Directory, b""),
        file("metadata/extra", "x"),
        file("resources/configmaps/namespaces/a/x.yaml", "x"),
    ];
    let (found, summary) = read(&tarball(&entries), &Limits::default());
    let summary = summary?;
    assert!(found.is_empty());
    assert_eq!(summary.ignored, 2);
    assert_eq!(
        summary.ignored_names,
        vec!["metadata/extra", "resources/configmaps/namespaces/a/x.yaml"]
    );
    Ok(())
}

#[test]
fn the_number_of_items_is_bounded() {
    let mut entries = vec![version("1.1.0")];
    for i in 0..5 {
        let name = format!("cm-{i}");
        entries.extend(velero_item(
            "configmaps",
            "v1",
            Some("a"),
            &name,
            &object("v1", "ConfigMap", Some("a"), &name),
        ));
    }
    let limits = Limits {
        items: 3,
        ..Limits::default()
    };
    let (e, text) = fatal(&tarball(&entries), &limits);
    assert!(matches!(e, VeleroError::TooLarge { .. }), "{e:?}");
    assert!(text.contains("the number of items (more than 3)"), "{text}");
}

#[test]
fn a_consumer_that_stops_stops_the_read() -> Result<(), VeleroError> {
    let mut seen = 0;
    let summary = read_tarball(&velero_tarball()[..], KEY, "b1", &Limits::default(), |_| {
        seen += 1;
        ControlFlow::Break(())
    })?;
    assert_eq!(seen, 1);
    assert_eq!(summary.items, 1);
    Ok(())
}
