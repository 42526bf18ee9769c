//! Record encoding: one version byte, then postcard. postcard is compact and
//! fast but not self-describing, so a change to a stored type must bump
//! [`VERSION`] and teach [`decode`] to read the previous one.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

pub const VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, Error> {
    postcard::to_extend(value, vec![VERSION])
        .map_err(|e| Error::internal(format!("cannot encode {what} record: {e}")))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    match bytes.split_first() {
        Some((&VERSION, body)) => postcard::from_bytes(body)
            .map_err(|e| Error::internal(format!("corrupt {what} record: {e}"))),
        Some((version, _)) => Err(Error::internal(format!(
            "{what} record has format version {version}; this build reads {VERSION}"
        ))),
        None => Err(Error::internal(format!("empty {what} record"))),
    }
}
