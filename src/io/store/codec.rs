//! Record encoding: one format-version byte, then postcard. postcard is
//! compact and fast but not self-describing, so a change to a stored type
//! bumps [`FORMAT`] and gives the type a way to read the older bytes
//! ([`Record::upgrade`], with the old shapes in `legacy.rs`). A record of a
//! version this build does not know is an error, never a silent default.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, StorageFault};
use crate::io::store::legacy;
use crate::model::github::{ReportedStatus, RepositoryConnection};
use crate::model::{
    AuditEvent, Deployment, IdempotencyRecord, Project, Route, ScheduledChange, TokenRecord,
    Workspace,
};

/// The format every record is written in.
///
/// - 1: the first format.
/// - 2: `Project.rolled_back_from`; `Deployment.hostnames` and `port`;
///   `Instance.address`; compact idempotency replies.
/// - 3: `DeploymentStatus::Cancelled` and `Deployment.superseded_by`.
/// - 4: `Project.pending_domains` and `Project.domain_token` (custom
///   domains are proven before they take traffic).
pub const FORMAT: u8 = 4;

/// A type stored in redb.
pub trait Record: Serialize + DeserializeOwned {
    /// Named in errors.
    const WHAT: &'static str;
    /// The oldest format whose bytes decode as this type unchanged.
    const SAME_SINCE: u8;

    /// Decodes bytes of an older format, if this type changed since.
    fn upgrade(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        let _ = (format, body);
        None
    }
}

impl Record for Workspace {
    const WHAT: &'static str = "workspace";
    const SAME_SINCE: u8 = 1;
}

impl Record for Route {
    const WHAT: &'static str = "route";
    const SAME_SINCE: u8 = 1;
}

impl Record for ScheduledChange {
    const WHAT: &'static str = "schedule";
    const SAME_SINCE: u8 = 1;
}

// Tokens and audit events came with format 2 and live in tables of their
// own, so no older bytes of them exist.
impl Record for TokenRecord {
    const WHAT: &'static str = "token";
    const SAME_SINCE: u8 = 2;
}

impl Record for AuditEvent {
    const WHAT: &'static str = "audit event";
    const SAME_SINCE: u8 = 2;
}

impl Record for RepositoryConnection {
    const WHAT: &'static str = "repository connection";
    const SAME_SINCE: u8 = 2;
}

impl Record for ReportedStatus {
    const WHAT: &'static str = "reported commit status";
    const SAME_SINCE: u8 = 2;
}

impl Record for Project {
    const WHAT: &'static str = "project";
    const SAME_SINCE: u8 = 4;

    fn upgrade(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        match format {
            1 => Some(postcard::from_bytes::<legacy::ProjectV1>(body).map(Into::into)),
            // Format 4 only appended `pending_domains` (an empty `Vec` is
            // one zero byte) and `domain_token` (`None`: one zero byte), so
            // format 2 and 3 bytes plus those two are a format 4 project
            // with no pending claim and no token yet. Its custom domains
            // were attached unproven and stay attached.
            2 | 3 => {
                let mut bytes = Vec::with_capacity(body.len() + 2);
                bytes.extend_from_slice(body);
                bytes.extend_from_slice(&[0, 0]);
                Some(postcard::from_bytes::<Project>(&bytes))
            }
            _ => None,
        }
    }
}

impl Record for Deployment {
    const WHAT: &'static str = "deployment";
    const SAME_SINCE: u8 = 3;

    fn upgrade(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        match format {
            1 => Some(postcard::from_bytes::<legacy::DeploymentV1>(body).map(Into::into)),
            // Format 3 only appended `superseded_by` (an `Option`, whose
            // `None` postcard writes as one zero byte) and a status variant
            // after the others, so format 2 bytes plus that byte are a
            // format 3 deployment that was never superseded.
            2 => {
                let mut bytes = Vec::with_capacity(body.len() + 1);
                bytes.extend_from_slice(body);
                bytes.push(0);
                Some(postcard::from_bytes::<Deployment>(&bytes))
            }
            _ => None,
        }
    }
}

impl Record for IdempotencyRecord {
    const WHAT: &'static str = "idempotency";
    const SAME_SINCE: u8 = 2;

    fn upgrade(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        (format == 1)
            .then(|| postcard::from_bytes::<legacy::IdempotencyRecordV1>(body).map(Into::into))
    }
}

pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_extend(value, vec![FORMAT])
        .map_err(|e| Error::internal(format!("cannot encode {} record: {e}", T::WHAT)))
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, Error> {
    // Bytes this build cannot read were not written by it: the file is
    // damaged (or a newer deployd wrote it), and writing on would be unsafe.
    let damaged = |what: String| Error::Storage(StorageFault::Damaged(what));
    let corrupt = |e: postcard::Error| damaged(format!("corrupt {} record: {e}", T::WHAT));
    match bytes.split_first() {
        Some((&format, body)) if (T::SAME_SINCE..=FORMAT).contains(&format) => {
            postcard::from_bytes(body).map_err(corrupt)
        }
        Some((&format, body)) => match T::upgrade(format, body) {
            Some(decoded) => decoded.map_err(corrupt),
            None => Err(damaged(format!(
                "{} record has format version {format}; this build reads {} to {FORMAT}",
                T::WHAT,
                T::SAME_SINCE
            ))),
        },
        None => Err(damaged(format!("empty {} record", T::WHAT))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeploymentId, NewDeployment, ProjectId, Source};

    #[test]
    fn a_format_3_project_reads_with_no_pending_domain() {
        let workspace = crate::model::Workspace {
            id: crate::model::WorkspaceId::generate(),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: 0,
        };
        let mut project = Project::new(&workspace, "web".into(), "Web".into(), 0);
        project.custom_domains = vec!["www.example.com".into()];
        let mut bytes = encode(&project).expect("encode");
        // Formats 2 and 3 wrote the same fields but the last two (0, 0).
        assert_eq!(bytes.split_off(bytes.len() - 2), [0, 0]);
        for format in [2, 3] {
            bytes[0] = format;
            assert_eq!(decode::<Project>(&bytes).expect("decode"), project);
        }

        project.pending_domains = vec!["api.example.com".into()];
        project.domain_token = Some("deployd-verify=00".into());
        let bytes = encode(&project).expect("encode");
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode::<Project>(&bytes).expect("decode"), project);
        let mut unknown = bytes;
        unknown[0] = FORMAT + 1;
        assert!(
            decode::<Project>(&unknown).is_err(),
            "a newer format is refused"
        );
    }

    #[test]
    fn a_format_2_deployment_reads_as_never_superseded() {
        let request = NewDeployment {
            environment: "production".into(),
            branch: "main".into(),
            source: Source::Image("nginx:1".into()),
            git_commit: None,
            command: Vec::new(),
            port: 8080,
        };
        let deployment = Deployment::new(ProjectId::generate(), 1, request, 0);
        let mut format3 = encode(&deployment).expect("encode");
        // Format 2 wrote the same fields but the last one (`None`: 0).
        assert_eq!(format3.pop(), Some(0));
        format3[0] = 2;
        assert_eq!(decode::<Deployment>(&format3).expect("decode"), deployment);

        let mut superseded = deployment.clone();
        superseded.superseded_by = Some(DeploymentId::generate());
        let bytes = encode(&superseded).expect("encode");
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode::<Deployment>(&bytes).expect("decode"), superseded);
        let mut unknown = bytes;
        unknown[0] = FORMAT + 1;
        assert!(
            decode::<Deployment>(&unknown).is_err(),
            "a newer format is refused"
        );
    }
}
