//! The AWS shared-credentials file format, as held in a location's credential Secret
//! (the same Secrets Velero uses).

/// One profile's keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SharedCredentials {
    /// Never prints the secret parts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a credentials file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("the credentials file has no [{profile}] profile (it has: {found})")]
    NoProfile { profile: String, found: String },
    #[error("profile [{profile}] of the credentials file lacks {key}")]
    MissingKey { profile: String, key: &'static str },
}

/// Reads profile `profile` (usually `default`) of an AWS shared-credentials file:
/// `[name]` sections of `key = value` lines, `#` and `;` comments.
pub fn parse_shared_credentials(
    text: &str,
    profile: &str,
) -> Result<SharedCredentials, CredentialsError> {
    let mut section: Option<String> = None;
    let mut seen = Vec::new();
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name
                .trim()
                .trim_start_matches("profile ")
                .trim()
                .to_string();
            seen.push(name.clone());
            section = Some(name);
            continue;
        }
        if section.as_deref() != Some(profile) {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().to_string();
            match key.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => key_id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    if !seen.iter().any(|s| s == profile) {
        return Err(CredentialsError::NoProfile {
            profile: profile.into(),
            found: if seen.is_empty() {
                "no profiles".into()
            } else {
                seen.join(", ")
            },
        });
    }
    let missing = |key| CredentialsError::MissingKey {
        profile: profile.into(),
        key,
    };
    Ok(SharedCredentials {
        access_key_id: key_id.ok_or_else(|| missing("aws_access_key_id"))?,
        secret_access_key: secret.ok_or_else(|| missing("aws_secret_access_key"))?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Velero-style secret\n[default]\naws_access_key_id = AKIA123\naws_secret_access_key=s3cr3t\n\n[profile other]\naws_access_key_id=B\naws_secret_access_key=C\naws_session_token=T\n";

    #[test]
    fn reads_the_named_profile() {
        let creds = parse_shared_credentials(FILE, "default").expect("default profile");
        assert_eq!(creds.access_key_id, "AKIA123");
        assert_eq!(creds.secret_access_key, "s3cr3t");
        assert_eq!(creds.session_token, None);
        let other = parse_shared_credentials(FILE, "other").expect("other profile");
        assert_eq!(other.session_token.as_deref(), Some("T"));
    }

    #[test]
    fn explains_what_is_missing() {
        assert_eq!(
            parse_shared_credentials(FILE, "prod"),
            Err(CredentialsError::NoProfile {
                profile: "prod".into(),
                found: "default, other".into()
            })
        );
        assert_eq!(
            parse_shared_credentials("[default]\naws_access_key_id=A\n", "default"),
            Err(CredentialsError::MissingKey {
                profile: "default".into(),
                key: "aws_secret_access_key"
            })
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = parse_shared_credentials(FILE, "default").expect("default profile");
        let shown = format!("{creds:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
