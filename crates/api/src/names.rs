//! Kubernetes' name rules, for checking names taken from specs and storage before they are
//! used in a request or a path.

/// An RFC 1123 label (a namespace's name): lowercase letters, digits and '-', starting and
/// ending with a letter or digit, at most 63.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// An RFC 1123 subdomain (most objects' names, ServiceAccounts' among them): labels joined
/// by '.', at most 253 in all.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for good in ["a", "team-a", "0ab", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "a:b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("arca.backup-runner"));
        for bad in ["", "a..b", ".a", "a.", "ns:sa", &"a.".repeat(127)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
