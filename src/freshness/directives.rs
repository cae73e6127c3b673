//! The directives of one `Cache-Control` line: split at the commas outside
//! quoted strings, where a backslash escapes the next character, and a
//! quoted argument read as the value it quotes (RFC 9110 §5.6.4, RFC 9111
//! §5.2).
//!
//! An upstream that hides `no-store` after `ext="a\"b"` must not get its
//! private answer stored: the escape is honoured, and a quoted string left
//! open hides nothing after it.

use std::borrow::Cow;

/// The directives of `text`, each as sent (`name` or `name=argument`),
/// empty ones skipped.
pub(super) fn split(text: &str) -> Split<'_> {
    Split {
        text,
        at: 0,
        loose: false,
    }
}

/// See [`split`].
pub(super) struct Split<'a> {
    text: &'a str,
    /// Where the next directive starts.
    at: usize,
    /// Past a quoted string that never closed: every comma splits.
    loose: bool,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        while self.at <= bytes.len() {
            let start = self.at;
            let end = match (self.loose, end_of_directive(bytes, start)) {
                (false, Some(end)) => end,
                _ => {
                    // A quote left open is malformed; reading on from it
                    // comma by comma keeps a later `no-store` or `private`.
                    self.loose = true;
                    next_comma(bytes, start)
                }
            };
            self.at = end + 1;
            let directive = &self.text[start..end];
            if !directive.trim().is_empty() {
                return Some(directive);
            }
        }
        None
    }
}

/// Where the directive starting at `start` ends (its comma, or the end of
/// the line), or `None` when a quoted string in it never closes.
fn end_of_directive(bytes: &[u8], start: usize) -> Option<usize> {
    let mut quoted = false;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b',' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    (!quoted).then_some(bytes.len())
}

fn next_comma(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| b == b',')
        .map_or(bytes.len(), |at| start + at)
}

/// An argument as the value it stands for: a quoted string without its
/// quotes and escapes, a token as it is.
pub(super) fn unquote(argument: &str) -> Cow<'_, str> {
    let Some(inner) = argument.strip_prefix('"') else {
        return Cow::Borrowed(argument);
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            c => value.push(c),
        }
    }
    Cow::Owned(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<&str> {
        split(text).map(str::trim).collect()
    }

    #[test]
    fn commas_inside_quoted_strings_do_not_split() {
        assert_eq!(
            all(r#"max-age=60, private="a, b", no-store"#),
            ["max-age=60", r#"private="a, b""#, "no-store"]
        );
        assert_eq!(all(" , max-age=1,,"), ["max-age=1"]);
    }

    #[test]
    fn an_escaped_quote_does_not_end_a_quoted_string() {
        assert_eq!(
            all(r#"max-age=60, ext="a\"b", no-store"#),
            ["max-age=60", r#"ext="a\"b""#, "no-store"]
        );
        assert_eq!(all(r#"ext="\"", private"#), [r#"ext="\"""#, "private"]);
        assert_eq!(all(r#"ext="a\\", private"#), [r#"ext="a\\""#, "private"]);
    }

    #[test]
    fn a_quoted_string_left_open_hides_nothing_after_it() {
        assert_eq!(
            all(r#"max-age=60, ext="abc, no-store, private"#),
            ["max-age=60", r#"ext="abc"#, "no-store", "private"]
        );
        assert_eq!(all(r#"ext="a\", no-store"#), [r#"ext="a\""#, "no-store"]);
    }

    #[test]
    fn quoted_arguments_read_as_their_value() {
        assert_eq!(unquote("60"), "60");
        assert_eq!(unquote(r#""60""#), "60");
        assert_eq!(unquote(r#""a\"b""#), r#"a"b"#);
        assert_eq!(unquote(r#""set-cookie, x-a""#), "set-cookie, x-a");
        assert_eq!(unquote(r#""open"#), "open");
        assert_eq!(unquote(r#""\"#), "");
    }
}
