//! `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw
//! body under the webhook's secret. Compared in constant time
//! (`Mac::verify_slice`), so a forger learns nothing from how long a
//! refusal takes.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Whether `header` (the header's value, if sent) signs `body` with
/// `secret`.
pub fn verify(secret: &[u8], header: Option<&[u8]>, body: &[u8]) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Some(signature) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The signature of `body`, as GitHub sends it (for tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::from("sha256=");
    for byte in bytes.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.chunks(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_its_body_and_secret() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let signed = sign(b"secret", body);
        assert!(signed.starts_with("sha256="));
        assert!(verify(b"secret", Some(signed.as_bytes()), body));
        assert!(verify(
            b"secret",
            Some(
                signed
                    .to_uppercase()
                    .replace("SHA256=", "sha256=")
                    .as_bytes()
            ),
            body
        ));
        assert!(!verify(b"other", Some(signed.as_bytes()), body));
        assert!(!verify(b"secret", Some(signed.as_bytes()), b"{}"));
        assert!(!verify(b"secret", None, body));
        assert!(!verify(b"secret", Some(b"sha256="), body));
        assert!(!verify(b"secret", Some(b"sha256=zz"), body));
        assert!(!verify(b"secret", Some(&signed.as_bytes()[..20]), body));
        assert!(!verify(
            b"secret",
            Some(signed.replace("sha256=", "sha1=").as_bytes()),
            body
        ));
    }

    /// The example of GitHub's documentation ("Validating webhook
    /// deliveries").
    #[test]
    fn matches_githubs_documented_example() {
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
