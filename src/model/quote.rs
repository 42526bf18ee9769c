//! Quoting request values into error messages. A message goes back to the
//! caller and into logs, so it must stay small whatever was sent (a 1 MB
//! filter once came back as a 1 MB error) and must not carry control
//! characters that a terminal would act on. Every error that names a
//! user-supplied value goes through [`quoted`].

/// Upper bound, in bytes, of the escaped part of a quoted value.
pub const MAX_QUOTED_BYTES: usize = 100;

/// `value` in double quotes with control characters escaped (Rust's debug
/// form), cut to at most [`MAX_QUOTED_BYTES`] of escaped text on a character
/// boundary; a cut value ends with an ellipsis and its original length.
pub fn quoted(value: &str) -> String {
    let mut escaped = String::new();
    let mut cut = false;
    for c in value.chars() {
        // Escaping can grow a character tenfold (`\u{10ffff}`), so the bound
        // is applied to the escaped form, not to the input.
        let piece: String = c.escape_debug().collect();
        if escaped.len() + piece.len() > MAX_QUOTED_BYTES {
            cut = true;
            break;
        }
        escaped.push_str(&piece);
    }
    if cut {
        format!("\"{escaped}\"... ({} bytes)", value.len())
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quoted("staging"), "\"staging\"");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn control_characters_are_escaped() {
        let q = quoted("\x1b[2J\n");
        assert!(!q.contains('\x1b') && !q.contains('\n'), "{q}");
        assert!(q.contains("\\u{1b}"), "{q}");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let q = quoted(&"x".repeat(1 << 20));
        assert!(q.len() < MAX_QUOTED_BYTES + 40, "{} bytes", q.len());
        assert!(q.ends_with("... (1048576 bytes)"), "{q}");
    }

    #[test]
    fn cuts_fall_on_character_boundaries_and_count_escapes() {
        let q = quoted(&"é".repeat(200));
        assert!(q.starts_with("\"éé"), "{q}");
        let controls = quoted(&"\x01".repeat(1000));
        assert!(controls.len() < MAX_QUOTED_BYTES + 40, "{controls}");
        assert!(controls.ends_with("(1000 bytes)"), "{controls}");
    }
}
