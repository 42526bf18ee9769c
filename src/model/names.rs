//! Generated hostnames. Every name is a valid DNS name: each label is 1 to 63
//! characters of `a-z`, `0-9` and `-` and neither starts nor ends with `-`.
//! A label that would be longer is cut and given a stable hash of the whole
//! label (and, for a branch, of the branch name itself, since two branches
//! can slug alike), so two long names never share a hostname.
//!
//! `{project}-{workspace}` is ambiguous (`a` in `b-c` and `a-b` in `c` give
//! the same label), so the plain names can collide across projects. A
//! project's fixed names (`LIVE`, one `ENVIRONMENT` per environment) are
//! reserved when it is created; the per-push names (`BRANCH`, `COMMIT`,
//! `DEPLOYMENT`) fall back to [`Hostnames::per_push`] candidates with a
//! suffix derived from the project id and the kind, so a collision never
//! takes another project's name and never drops one of ours.

use crate::model::routes::RouteKind;
use crate::model::{DeploymentId, ProjectId};

const MAX_LABEL: usize = 63;
const HASH_LEN: usize = 8;
/// Length of the collision suffix of a per-push name.
const SUFFIX_LEN: usize = 6;
/// How many suffixed names a per-push route tries after the plain one.
pub const SUFFIX_ATTEMPTS: u32 = 3;

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
        self.host_keyed(&["git", &branch_slug(branch)], None, Some(branch))
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

    /// The names a per-push route may use, most preferred first: the plain
    /// seed form, then forms with a suffix that only this project can
    /// produce for this kind. A branch whose slug reads like a short commit
    /// hash skips the plain form, so it never takes a commit's name.
    /// `part` is the deployment's short id, the commit sha or the branch.
    pub fn per_push(&self, kind: RouteKind, part: &str, project: &ProjectId) -> Vec<String> {
        let middle: [&str; 2];
        let slug;
        let sha7;
        let parts: &[&str] = match kind {
            RouteKind::Deployment => {
                middle = ["dep", part];
                &middle
            }
            RouteKind::Commit => {
                sha7 = part.get(..7).unwrap_or(part);
                middle = ["git", sha7];
                &middle
            }
            RouteKind::Branch => {
                slug = branch_slug(part);
                middle = ["git", &slug];
                &middle
            }
            // Fixed names are reserved, never suffixed.
            RouteKind::Environment | RouteKind::Live => return Vec::new(),
        };
        let plain_allowed = !(kind == RouteKind::Branch && looks_like_commit(&branch_slug(part)));
        // Branches that slug alike must still get distinct names when the
        // label is cut, so the cut label's hash covers the branch itself.
        let key = (kind == RouteKind::Branch).then_some(part);
        let mut names = Vec::with_capacity(1 + SUFFIX_ATTEMPTS as usize);
        if plain_allowed {
            names.push(self.host_keyed(parts, None, key));
        }
        for attempt in 1..=SUFFIX_ATTEMPTS {
            let suffix = collision_suffix(project, kind, attempt);
            names.push(self.host_keyed(parts, Some(&suffix), key));
        }
        names
    }

    fn host(&self, middle: &[&str]) -> String {
        self.host_keyed(middle, None, None)
    }

    /// `key`, when given, is the raw input the label was slugged from: a
    /// label too long for DNS is then cut with a hash of the label and the
    /// key, because two inputs may slug to the same label.
    fn host_keyed(&self, middle: &[&str], suffix: Option<&str>, key: Option<&str>) -> String {
        let mut label = String::from(self.project_slug);
        for part in middle {
            label.push('-');
            label.push_str(part);
        }
        label.push('-');
        label.push_str(self.workspace_slug);
        if let Some(suffix) = suffix {
            label.push('-');
            label.push_str(suffix);
        }
        let label = match key {
            Some(key) => fit_label_keyed(&label, key),
            None => fit_label(&label),
        };
        format!("{label}.{}", self.apex)
    }
}

/// A slug of 7 to 64 hex digits could be read as an abbreviated commit
/// hash, and `{project}-git-{slug}-{workspace}` is then a `COMMIT` name.
pub fn looks_like_commit(slug: &str) -> bool {
    (7..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `SUFFIX_LEN` base-36 characters of a hash of the project id, the kind and
/// the attempt: stable, and unknown to other tenants (who do not see the id).
fn collision_suffix(project: &ProjectId, kind: RouteKind, attempt: u32) -> String {
    let input = format!("{project}/{}/{attempt}", kind.as_str());
    base36(fnv1a64(input.as_bytes()), SUFFIX_LEN)
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
    cut_label(label, &stable_hash(label))
}

/// As [`fit_label`], but the hash also covers `key` (the unslugged input),
/// so two inputs that slug alike never share a cut label.
fn fit_label_keyed(label: &str, key: &str) -> String {
    if label.len() <= MAX_LABEL {
        return label.to_string();
    }
    cut_label(label, &stable_hash(&format!("{label}\n{key}")))
}

fn cut_label(label: &str, hash: &str) -> String {
    let keep = MAX_LABEL - HASH_LEN - 1;
    let prefix = label[..keep].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// FNV-1a 64 in base 36, `HASH_LEN` characters. It must never change: it is
/// part of hostnames already handed out.
fn stable_hash(input: &str) -> String {
    base36(fnv1a64(input.as_bytes()), HASH_LEN)
}

fn base36(mut hash: u64, len: usize) -> String {
    let mut out = vec![b'0'; len];
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
    fn long_branches_that_slug_alike_get_distinct_names() {
        let n = names();
        let long = "feature/".to_string() + &"login-page-".repeat(8);
        let alike = long.replace('/', "_").to_uppercase();
        assert_eq!(branch_slug(&long), branch_slug(&alike));
        assert_ne!(n.branch(&long), n.branch(&alike));
        let project = ProjectId::generate();
        let ours = n.per_push(RouteKind::Branch, &long, &project);
        let theirs = n.per_push(RouteKind::Branch, &alike, &project);
        assert!(ours.iter().all(|name| !theirs.contains(name)));
        assert_eq!(ours[0], n.branch(&long));
        // Short names keep the seed's rule: the same slug is the same name.
        assert_eq!(n.branch("feature/x"), n.branch("feature_x"));
    }

    #[test]
    fn per_push_names_start_plain_and_fall_back_to_project_suffixes() {
        let n = names();
        let project = ProjectId::generate();
        let other = ProjectId::generate();
        let branch = n.per_push(RouteKind::Branch, "main", &project);
        assert_eq!(branch[0], n.branch("main"));
        assert_eq!(branch.len(), 1 + SUFFIX_ATTEMPTS as usize);
        assert!(branch[1].starts_with("web-git-main-acme-"), "{}", branch[1]);
        assert_ne!(branch[1], n.per_push(RouteKind::Branch, "main", &other)[1]);
        assert_ne!(
            branch[1],
            n.per_push(RouteKind::Commit, "main", &project)[1]
        );
        assert_eq!(
            branch,
            n.per_push(RouteKind::Branch, "main", &project),
            "stable"
        );
        let mut all = branch.clone();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), branch.len());
    }

    #[test]
    fn a_branch_named_like_a_short_sha_never_gets_the_commit_name() {
        let n = names();
        let project = ProjectId::generate();
        let commit = n.per_push(RouteKind::Commit, "abc1234def", &project);
        assert_eq!(
            commit[0],
            n.commit("abc1234def"),
            "commits keep the plain form"
        );
        let branch = n.per_push(RouteKind::Branch, "abc1234", &project);
        assert!(!branch.contains(&commit[0]), "{branch:?}");
        assert!(
            looks_like_commit("deadbee")
                && !looks_like_commit("main")
                && !looks_like_commit("abc12")
        );
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
        ]
        .into_iter()
        .chain(n.per_push(RouteKind::Branch, &"b".repeat(200), &ProjectId::generate()))
        {
            validate::fqdn(&host, "host").unwrap_or_else(|e| panic!("{host}: {e}"));
        }
    }
}
