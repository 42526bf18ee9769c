//! Terminal output primitives for the client subcommands: the one writer to
//! stdout, JSON printing, aligned tables and key/value blocks, and the
//! formatting of enums, timestamps and durations.
//!
//! Human output carries strings the daemon stored for other users (commit
//! authors and messages, names, build errors). Printed raw, an escape
//! sequence in one of them would rewrite the reader's terminal, so every
//! human line goes through [`terminal_safe`]; JSON is left to serde.

use std::borrow::Cow;
use std::io::Write;

use pbjson_types::Timestamp;
use serde::Serialize;

use crate::pb;

/// Characters a terminal may act on rather than show: C0 controls other
/// than newline, DEL, C1 controls, and the bidirectional overrides and
/// isolates that reorder what is displayed (Trojan Source).
fn is_terminal_control(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every terminal control replaced by its visible `\u{1b}`
/// form; newlines stay, since the human views are multi-line.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_control) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_terminal_control(c) {
            safe.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

/// Writes human text, made [`terminal_safe`], plus a newline.
pub fn emit(text: &str) -> std::io::Result<()> {
    write_line(&terminal_safe(text))
}

/// Writes `text` plus a newline and flushes, so streamed lines appear as
/// they happen even when stdout is a pipe. Errors (a closed pipe) are
/// returned rather than panicking the way `println!` would.
fn write_line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

pub fn json_pretty<T: Serialize>(value: &T) -> anyhow::Result<()> {
    write_line(&serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// One compact object per line (JSON Lines), for streams.
pub fn json_line<T: Serialize>(value: &T) -> anyhow::Result<()> {
    write_line(&serde_json::to_string(value)?)?;
    Ok(())
}

/// Left-aligned columns separated by two spaces, with an upper-case header.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Cells are made safe here, before the widths are measured, so an
    /// escaped cell still lines up; a newline would break the row, so it
    /// is escaped too.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .iter()
                .map(|cell| terminal_safe(cell).replace('\n', "\\n"))
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(&format!("{cell:<width$}  "));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines with the values aligned; a value with several lines
/// continues under the first, indented to the value column.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = terminal_safe(value);
        let mut lines = value.lines();
        out.push_str(&format!("{key:<width$}  {}\n", lines.next().unwrap_or("")));
        for line in lines {
            out.push_str(&format!("{:width$}  {line}\n", ""));
        }
    }
    out
}

/// `-` for empty strings, so columns never collapse.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_string()
    } else {
        value.to_string()
    }
}

fn enum_label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

// The enum fields are raw i32 on the wire; a value this client does not
// know (a newer daemon) prints as a number instead of failing.
pub fn status(value: i32) -> String {
    match pb::DeploymentStatus::try_from(value) {
        Ok(s) => enum_label(s.as_str_name(), "DEPLOYMENT_STATUS_"),
        Err(_) => format!("status({value})"),
    }
}

pub fn desired_state(value: i32) -> String {
    match pb::DesiredState::try_from(value) {
        Ok(s) => enum_label(s.as_str_name(), "DESIRED_STATE_"),
        Err(_) => format!("state({value})"),
    }
}

pub fn route_kind(value: i32) -> String {
    match pb::RouteKind::try_from(value) {
        Ok(k) => enum_label(k.as_str_name(), "ROUTE_KIND_"),
        Err(_) => format!("kind({value})"),
    }
}

pub fn timestamp(ts: Option<&Timestamp>) -> String {
    ts.map_or_else(|| "-".to_string(), |ts| rfc3339(ts.seconds))
}

/// Seconds since the Unix epoch as RFC 3339 UTC, e.g.
/// `2023-11-14T22:13:20Z`.
pub fn rfc3339(seconds: i64) -> String {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let secs = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day
/// count since 1970-01-01, valid for any i64 day count we can be given.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn millis(ts: &Timestamp) -> i128 {
    i128::from(ts.seconds) * 1000 + i128::from(ts.nanos) / 1_000_000
}

/// How long a step took, e.g. `0.3s`, `12.5s`, `2m05s`.
pub fn elapsed(start: &Timestamp, end: &Timestamp) -> String {
    let ms = (millis(end) - millis(start)).max(0);
    if ms < 60_000 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else {
        let secs = ms / 1000;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn durations() {
        let at = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(elapsed(&at(10, 0), &at(11, 250_000_000)), "1.2s");
        assert_eq!(elapsed(&at(10, 0), &at(135, 0)), "2m05s");
        assert_eq!(elapsed(&at(10, 0), &at(9, 0)), "0.0s");
    }

    #[test]
    fn enum_labels() {
        assert_eq!(status(pb::DeploymentStatus::Ready as i32), "ready");
        assert_eq!(route_kind(pb::RouteKind::Live as i32), "live");
        assert_eq!(desired_state(pb::DesiredState::Standby as i32), "standby");
        assert_eq!(status(99), "status(99)");
    }

    #[test]
    fn multi_line_fields() {
        let text = fields(&[("id", "x".into()), ("hostnames", "a\nb".into())]);
        assert_eq!(text, "id         x\nhostnames  a\n           b\n");
    }

    #[test]
    fn terminal_controls_become_visible() {
        assert_eq!(terminal_safe("plain text\nline 2"), "plain text\nline 2");
        assert_eq!(terminal_safe("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(terminal_safe("\x07\t\r\x7f"), "\\u{7}\\u{9}\\u{d}\\u{7f}");
        assert_eq!(terminal_safe("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(terminal_safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(terminal_safe("caf\u{e9} \u{1f600}"), "caf\u{e9} \u{1f600}");
    }

    #[test]
    fn tables_and_fields_are_terminal_safe() {
        let mut table = Table::new(&["NAME"]);
        table.row(vec!["x\x1b]0;owned\x07\ny".into()]);
        let text = table.render();
        assert!(!text.chars().any(is_terminal_control), "{text:?}");
        assert_eq!(text.lines().count(), 2, "{text:?}");
        let text = fields(&[("author", "\x1b[2Jeve".into())]);
        assert_eq!(text, "author  \\u{1b}[2Jeve\n");
    }

    #[test]
    fn table_alignment() {
        let mut table = Table::new(&["A", "LONGER"]);
        table.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(table.render(), "A          LONGER\nwide cell  x\n");
    }
}
