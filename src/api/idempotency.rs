//! Reads a request's idempotency key, from the `idempotency_key` field or
//! the `idempotency-key` metadata entry (both may be sent if they agree),
//! and fingerprints the request so a key re-used for another request is
//! caught.

use prost::Message;
use tonic::Request;

use crate::error::Error;
use crate::model::names::fnv1a64;
use crate::model::{Idempotency, IdempotencyKey};

pub const METADATA_KEY: &str = "idempotency-key";

/// `field` reads the key field; `without_key` returns the request with the
/// key cleared, which is what the fingerprint covers.
pub fn extract<T: Message + Clone>(
    request: &Request<T>,
    field: impl Fn(&T) -> &str,
    without_key: impl Fn(&mut T),
) -> Result<Option<Idempotency>, Error> {
    let from_metadata =
        match request.metadata().get(METADATA_KEY) {
            Some(value) => Some(value.to_str().map_err(|_| {
                Error::invalid("the idempotency-key metadata must be visible ASCII")
            })?),
            None => None,
        };
    let from_field = Some(field(request.get_ref())).filter(|k| !k.is_empty());
    let key = match (from_field, from_metadata) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid(
                "idempotency_key and the idempotency-key metadata differ; send one, or the same in both",
            ));
        }
        (Some(key), _) | (None, Some(key)) => key,
        (None, None) => return Ok(None),
    };
    let key = IdempotencyKey::parse(key)?;
    let mut canonical = request.get_ref().clone();
    without_key(&mut canonical);
    Ok(Some(Idempotency {
        key,
        fingerprint: fnv1a64(&canonical.encode_to_vec()),
    }))
}
