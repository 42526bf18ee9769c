//! Generated hostnames. Every name is a valid DNS name: each label is 1 to 63
//! characters of `a-z`, `0-9` and `-` and neither starts nor ends with `-`.
//! A label that would be longer is cut and given a stable hash of the whole
//! label, so two long names never share a hostname.

use crate::model::DeploymentId;

const MAX_LABEL: usize = 63;
const HASH_LEN: usize = 8;

/// Builds the hostnames of one project.
#[derive(Debug, Clone, Copy)]
pub struct Hostnames<'a> {
    pub apex: &'a str,
    pub project_slug: &'a str,
    pub workspace_slug: &'a str,
}

impl Hostnames<'_> {
    /// `{project}-{workspace}.{apex}`: the project's `LIVE` hostname.
    pub fn live(&self) -> String {
        self.host(&[])
    }

    /// `{project}-{environment}-{workspace}.{apex}`.
    pub fn environment(&self, environment_slug: &str) -> String {
        self.host(&[environment_slug])
    }

    /// `{project}-git-{branch-slug}-{workspace}.{apex}`.
    pub fn branch(&self, branch: &str) -> String {
        self.host(&["git", &branch_slug(branch)])
    }

    /// `{project}-git-{sha7}-{workspace}.{apex}`.
    pub fn commit(&self, sha: &str) -> String {
        let sha7 = sha.get(..7).unwrap_or(sha);
        self.host(&["git", sha7])
    }

    /// `{project}-dep-{deployment-short-id}-{workspace}.{apex}`.
    pub fn deployment(&self, id: &DeploymentId) -> String {
        self.host(&["dep", id.short()])
    }

    fn host(&self, middle: &[&str]) -> String {
        let mut label = String::from(self.project_slug);
        for part in middle {
            label.push('-');
            label.push_str(part);
        }
        label.push('-');
        label.push_str(self.workspace_slug);
        format!("{}.{}", fit_label(&label), self.apex)
    }
}

/// The seed's branch slug: lower case, and every run of characters outside
/// `a-z0-9` (including `-` and `_`) becomes one `-`, trimmed at both ends.
pub fn branch_slug(branch: &str) -> String {
    let mut slug = String::with_capacity(branch.len());
    let mut pending_dash = false;
    for c in branch.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !slug.is_empty() {
                slug.push('-');
            }
            pending_dash = false;
            slug.push(c);
        } else {
            pending_dash = true;
        }
    }
    if slug.is_empty() {
        // A branch of only symbols still needs a name of its own.
        slug = format!("b-{}", stable_hash(branch));
    }
    slug
}

/// Cuts a label to 63 characters, keeping it unique with a hash suffix.
pub fn fit_label(label: &str) -> String {
    if label.len() <= MAX_LABEL {
        return label.to_string();
    }
    let keep = MAX_LABEL - HASH_LEN - 1;
    let prefix = label[..keep].trim_end_matches('-');
    format!("{prefix}-{}", stable_hash(label))
}

/// FNV-1a 64 in base 36, `HASH_LEN` characters. It must never change: it is
/// part of hostnames already handed out.
fn stable_hash(input: &str) -> String {
    let mut hash = fnv1a64(input.as_bytes());
    let mut out = [b'0'; HASH_LEN];
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(hash % 36) as usize];
        hash /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// FNV-1a, 64 bits: small, stable across versions and platforms.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate;

    fn names() -> Hostnames<'static> {
        Hostnames {
            apex: "deployd.local",
            project_slug: "web",
            workspace_slug: "acme",
        }
    }

    #[test]
    fn formats_follow_the_spec() {
        let n = names();
        assert_eq!(n.live(), "web-acme.deployd.local");
        assert_eq!(n.environment("preview"), "web-preview-acme.deployd.local");
        assert_eq!(
            n.commit("abcdef0123456"),
            "web-git-abcdef0-acme.deployd.local"
        );
        assert_eq!(
            n.branch("Feature/Login__Page"),
            "web-git-feature-login-page-acme.deployd.local"
        );
    }

    #[test]
    fn branch_slugs() {
        assert_eq!(branch_slug("main"), "main");
        assert_eq!(branch_slug("--Fix_it--now--"), "fix-it-now");
        assert_eq!(branch_slug("a///b"), "a-b");
        assert!(branch_slug("___").starts_with("b-"));
    }

    #[test]
    fn long_labels_are_cut_valid_and_distinct() {
        let n = names();
        let a = n.branch(&format!("{}-one", "x".repeat(80)));
        let b = n.branch(&format!("{}-two", "x".repeat(80)));
        assert_ne!(a, b);
        for host in [&a, &b] {
            validate::fqdn(host, "host").unwrap();
            assert!(host.split('.').all(|l| l.len() <= 63));
        }
        assert_eq!(a, n.branch(&format!("{}-one", "x".repeat(80))), "stable");
    }

    #[test]
    fn every_generated_name_is_dns_valid() {
        let id = DeploymentId::generate();
        let long = "a".repeat(32);
        let n = Hostnames {
            apex: "deployd.local",
            project_slug: &long,
            workspace_slug: &long,
        };
        for host in [
            n.live(),
            n.environment("production"),
            n.branch("-weird--/--branch-"),
            n.commit("0123456789"),
            n.deployment(&id),
        ] {
            validate::fqdn(&host, "host").unwrap_or_else(|e| panic!("{host}: {e}"));
        }
    }
}
