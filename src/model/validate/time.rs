//! Timestamps from requests (`git_commit.committed_at`). Stored times are
//! milliseconds since the epoch and are shown as RFC 3339 with four-digit
//! years, so a request time must fall in 1970..=9999 with valid nanoseconds;
//! anything else is a mistake the caller should hear about, not a value to
//! wrap around or clamp.

use crate::error::Error;
use crate::model::UnixMillis;

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A protobuf `Timestamp`'s fields as milliseconds since the epoch.
pub fn timestamp(seconds: i64, nanos: i32, field: &str) -> Result<UnixMillis, Error> {
    if !(0..=999_999_999).contains(&nanos) {
        return Err(Error::invalid(format!(
            "{field} has nanos {nanos}; use 0 to 999999999"
        )));
    }
    if !(0..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
        return Err(Error::invalid(format!(
            "{field} is {seconds} seconds since 1970; use a time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
        )));
    }
    // In range, so neither the product nor the conversion can overflow.
    Ok(seconds as u64 * 1000 + nanos as u64 / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_range_become_millis() {
        assert_eq!(timestamp(0, 0, "t"), Ok(0));
        assert_eq!(
            timestamp(1_700_000_000, 250_000_000, "t"),
            Ok(1_700_000_000_250)
        );
        assert_eq!(
            timestamp(MAX_TIMESTAMP_SECONDS, 999_999_999, "t"),
            Ok(MAX_TIMESTAMP_SECONDS as u64 * 1000 + 999)
        );
    }

    #[test]
    fn times_out_of_range_name_the_field() {
        for (seconds, nanos) in [
            (-1, 0),
            (i64::MIN, 0),
            (MAX_TIMESTAMP_SECONDS + 1, 0),
            (i64::MAX, 0),
            (0, -1),
            (0, 1_000_000_000),
        ] {
            let error =
                timestamp(seconds, nanos, "git_commit.committed_at").expect_err("out of range");
            assert!(
                error.to_string().starts_with("git_commit.committed_at "),
                "{error}"
            );
        }
    }
}
