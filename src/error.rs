//! The error every layer reports upward. Each variant is a decision about
//! what the caller can do next, and maps to exactly one gRPC code in
//! `api::status` (the only place that conversion happens).

use std::fmt;

/// A failed request, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed: fix it before retrying.
    #[error("{0}")]
    InvalidArgument(String),
    /// An id or name that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something with that unique name already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// Well formed, but not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The operation was cut short by a concurrent change (a promote while
    /// a rollback's target was waking); nothing was changed.
    #[error("{0}")]
    Aborted(String),
    /// Too much work is queued; retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The daemon (or the part owning this project) cannot answer right now;
    /// retrying may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// No valid bearer token came with the request.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token is valid but its role may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The data file cannot be used right now (see [`StorageFault`]);
    /// nothing was changed.
    #[error("{0}")]
    Storage(StorageFault),
    /// A bug or a storage failure. The message is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl fmt::Display) -> Self {
        Self::InvalidArgument(msg.to_string())
    }

    pub fn not_found(msg: impl fmt::Display) -> Self {
        Self::NotFound(msg.to_string())
    }

    pub fn precondition(msg: impl fmt::Display) -> Self {
        Self::FailedPrecondition(msg.to_string())
    }

    /// The gRPC name of the code this error maps to (`NOT_FOUND`, ...), as
    /// the audit log records it.
    pub fn code_name(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::NotFound(_) => "NOT_FOUND",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Self::Aborted(_) => "ABORTED",
            Self::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            Self::Unavailable(_) | Self::Storage(_) => "UNAVAILABLE",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn internal(msg: impl fmt::Display) -> Self {
        Self::Internal(msg.to_string())
    }

    /// Whether this is an answer about the request (the store refused a
    /// write on its merits) rather than a failure to store anything.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::InvalidArgument(_)
                | Self::NotFound(_)
                | Self::AlreadyExists(_)
                | Self::FailedPrecondition(_)
                | Self::Aborted(_)
                | Self::ResourceExhausted(_)
        )
    }
}

/// Why the data file cannot be used. Both stop every write; they differ in
/// what ends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageFault {
    /// A write failed (a full disk, an I/O error). The store retries on its
    /// own and takes writes again once one succeeds.
    Unwritable(String),
    /// The file holds bytes that are not what deployd wrote. Nothing is
    /// written to it again by this process: an operator must look.
    Damaged(String),
}

impl fmt::Display for StorageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unwritable(reason) => write!(
                f,
                "the data file cannot be written: {reason}; nothing was changed, retry once space is freed (deployd resumes writing on its own)"
            ),
            Self::Damaged(what) => write!(
                f,
                "the data file is damaged: {what}; deployd stopped writing to it, run `deployd check`"
            ),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
