//! The one conversion from [`Error`] to a gRPC status. Internal details are
//! logged here and replaced by a generic message for the client.

use tonic::Status;

use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::Storage(fault) => Status::unavailable(fault.to_string()),
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error; see the daemon's log")
            }
        }
    }
}
