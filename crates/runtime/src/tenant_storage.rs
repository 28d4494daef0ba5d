//! Where tenants' own locations may point. The admin lists endpoints, optionally with a
//! bucket (`--tenant-storage https://s3.example.com/team-backups`, repeated); a location in
//! a tenant's namespace whose endpoint and bucket match no entry is refused before any
//! connection is made. By default the list is empty: tenants use the operator's location,
//! under `tenants/<namespace>/`. Pure: parsing and matching, no I/O.

use arca_api::{BackupStorageLocation, Provider};

/// One entry of `--tenant-storage`: an S3 endpoint, and a bucket or any bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedStorage {
    /// `scheme://host[:port]`, lowercase, no trailing slash.
    pub endpoint: String,
    /// None: any bucket of the endpoint.
    pub bucket: Option<String>,
}

impl std::str::FromStr for AllowedStorage {
    type Err = String;

    /// `https://host[:port]` or `https://host[:port]/bucket`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "--tenant-storage {text:?}: {why}; expected https://host[:port] or https://host[:port]/bucket"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(bad("the scheme is neither https nor http"));
        }
        let rest = rest.trim_end_matches('/');
        let (host, bucket) = match rest.split_once('/') {
            Some((host, bucket)) => (host, Some(bucket)),
            None => (rest, None),
        };
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(bad(
                "the host is missing or holds user info, a query or a fragment",
            ));
        }
        if let Some(bucket) = bucket
            && (bucket.is_empty() || bucket.contains(['/', '?', '#']))
        {
            return Err(bad("a bucket is one path segment"));
        }
        Ok(Self {
            endpoint: format!("{scheme}://{}", host.to_ascii_lowercase()),
            bucket: bucket.map(str::to_string),
        })
    }
}

impl std::fmt::Display for AllowedStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bucket {
            Some(bucket) => write!(f, "{}/{bucket}", self.endpoint),
            None => write!(f, "{} (any bucket)", self.endpoint),
        }
    }
}

/// The endpoint a location reaches: `config.s3Url`, else AWS's regional endpoint.
pub fn endpoint_of(location: &BackupStorageLocation) -> String {
    match location.spec.config.get("s3Url").filter(|u| !u.is_empty()) {
        Some(url) => {
            let url = url.trim_end_matches('/');
            match url.split_once("://") {
                Some((scheme, host)) => format!(
                    "{}://{}",
                    scheme.to_ascii_lowercase(),
                    host.to_ascii_lowercase()
                ),
                None => url.to_ascii_lowercase(),
            }
        }
        None => {
            let region = location
                .spec
                .config
                .get("region")
                .map(String::as_str)
                .unwrap_or("us-east-1");
            format!("https://s3.{region}.amazonaws.com")
        }
    }
}

/// Why a tenant's location is outside what the admin allows, if it is.
pub fn refusal(location: &BackupStorageLocation, allowed: &[AllowedStorage]) -> Option<String> {
    if location.spec.provider != Provider::Aws {
        return None; // the other providers are refused for tenants on their own
    }
    let endpoint = endpoint_of(location);
    let bucket = &location.spec.object_storage.bucket;
    let fits = allowed
        .iter()
        .any(|a| a.endpoint == endpoint && a.bucket.as_ref().is_none_or(|b| b == bucket));
    if fits {
        return None;
    }
    let listed = if allowed.is_empty() {
        "none (the operator's --tenant-storage is empty)".to_string()
    } else {
        allowed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "{endpoint}/{bucket} is not storage the admin allows for tenants (allowed: {listed}). Use the operator's location (omit storageLocation: backups go under tenants/<namespace>/), or ask the admin to add --tenant-storage {endpoint}/{bucket}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(s3_url: Option<&str>, bucket: &str) -> BackupStorageLocation {
        let mut config = serde_json::json!({"region": "eu-west-1"});
        if let Some(url) = s3_url {
            config["s3Url"] = url.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "arca.dev/v1alpha1", "kind": "BackupStorageLocation",
            "metadata": {"name": "mine", "namespace": "team"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": bucket}, "config": config}
        }))
        .expect("location")
    }

    fn allow(entries: &[&str]) -> Vec<AllowedStorage> {
        entries.iter().map(|e| e.parse().expect("entry")).collect()
    }

    #[test]
    fn entries_are_parsed_or_refused_by_name() {
        assert_eq!(
            "HTTPS://S3.Example.com:9000/".parse::<AllowedStorage>(),
            Ok(AllowedStorage {
                endpoint: "https://s3.example.com:9000".into(),
                bucket: None
            })
        );
        assert_eq!(
            "https://s3.example.com/team-a".parse::<AllowedStorage>(),
            Ok(AllowedStorage {
                endpoint: "https://s3.example.com".into(),
                bucket: Some("team-a".into())
            })
        );
        for bad in [
            "s3.example.com",
            "ftp://s3.example.com",
            "https://",
            "https://user@s3.example.com",
            "https://s3.example.com/a/b",
            "https://s3.example.com/a?x",
        ] {
            let e = bad.parse::<AllowedStorage>().expect_err(bad);
            assert!(e.starts_with(&format!("--tenant-storage {bad:?}")), "{e}");
        }
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let why = refusal(&location(Some("https://s3.example.com"), "b"), &[]).expect("refused");
        assert!(
            why.contains("https://s3.example.com/b is not storage the admin allows"),
            "{why}"
        );
        assert!(why.contains("allowed: none"), "{why}");
    }

    #[test]
    fn an_endpoint_and_bucket_must_both_fit() {
        let allowed = allow(&[
            "https://s3.example.com/team-a",
            "http://minio.internal:9000",
        ]);
        assert_eq!(
            refusal(
                &location(Some("https://S3.example.com/"), "team-a"),
                &allowed
            ),
            None
        );
        assert_eq!(
            refusal(
                &location(Some("http://minio.internal:9000"), "any"),
                &allowed
            ),
            None
        );
        for (url, bucket) in [
            (Some("https://s3.example.com"), "team-b"),
            (Some("https://s3.example.com.evil.net"), "team-a"),
            (Some("http://s3.example.com"), "team-a"),
            (Some("http://minio.internal:9001"), "any"),
            (None, "team-a"),
        ] {
            assert!(
                refusal(&location(url, bucket), &allowed).is_some(),
                "{url:?} {bucket}"
            );
        }
        // Without s3Url a location reaches AWS in its region.
        let aws = allow(&["https://s3.eu-west-1.amazonaws.com/team-a"]);
        assert_eq!(refusal(&location(None, "team-a"), &aws), None);
    }
}
