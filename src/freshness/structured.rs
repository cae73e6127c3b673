//! RFC 8941 Dictionary Structured Fields, parsed strictly: a targeted
//! cache-control field (RFC 9213 §2.1) that is not a valid Dictionary is
//! ignored as a whole, so the parser must refuse what the grammar refuses
//! rather than make the best of it as a `Cache-Control` parser does.
//!
//! Only what a Dictionary needs: members with bare items or inner lists,
//! and parameters (parsed, then left to the caller, which ignores them).

/// A bare item (RFC 8941 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BareItem {
    /// At most 15 digits, so it fits an `i64`.
    Integer(i64),
    /// A decimal in thousandths (at most 12 integer and 3 fraction digits).
    Decimal(i64),
    String(String),
    Token(String),
    /// The base64 text between the colons, as sent.
    ByteSequence(String),
    Boolean(bool),
}

/// Parameters of an item or inner list, in order, later duplicates
/// overwriting earlier ones.
pub(crate) type Parameters = Vec<(String, BareItem)>;

/// One member's value: an item, or an inner list of items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    Item(BareItem, Parameters),
    InnerList(Vec<(BareItem, Parameters)>, Parameters),
}

/// Why a field value is not a Dictionary (shown only in tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 8941 dictionary: {0} at byte {1}")]
pub(crate) struct Malformed(&'static str, usize);

/// Parses a Dictionary field value (the field lines already joined with
/// `, `, RFC 8941 §4.2). Members keep the position of their first
/// occurrence and the value of their last (§4.2.2).
pub(crate) fn parse_dictionary(text: &str) -> Result<Vec<(String, Member)>, Malformed> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    p.skip_sp();
    let mut members: Vec<(String, Member)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            Member::Item(BareItem::Boolean(true), p.parameters()?)
        };
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some((_, value)) => *value = member,
            None => members.push((key, member)),
        }
        p.skip_ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return Err(p.fail("expected ','"));
        }
        p.skip_ows();
        if p.done() {
            return Err(p.fail("a trailing ','"));
        }
    }
    Ok(members)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn fail(&self, why: &'static str) -> Malformed {
        Malformed(why, self.at)
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while self.eat(b' ') || self.eat(b'\t') {}
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Result<String, Malformed> {
        let start = self.at;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.at += 1,
            _ => return Err(self.fail("a key must start with a lowercase letter or '*'")),
        }
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = self.peek() {
            self.at += 1;
        }
        Ok(self.text(start))
    }

    fn text(&self, start: usize) -> String {
        String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned()
    }

    fn item_or_inner_list(&mut self) -> Result<Member, Malformed> {
        if !self.eat(b'(') {
            let item = self.bare_item()?;
            return Ok(Member::Item(item, self.parameters()?));
        }
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return Ok(Member::InnerList(items, self.parameters()?));
            }
            let item = self.bare_item()?;
            items.push((item, self.parameters()?));
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(self.fail("an inner list's items are separated by spaces"));
            }
        }
    }

    fn parameters(&mut self) -> Result<Parameters, Malformed> {
        let mut parameters: Parameters = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            match parameters.iter_mut().find(|(k, _)| *k == key) {
                Some((_, old)) => *old = value,
                None => parameters.push((key, value)),
            }
        }
        Ok(parameters)
    }

    fn bare_item(&mut self) -> Result<BareItem, Malformed> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b'*' | b'a'..=b'z' | b'A'..=b'Z') => Ok(self.token()),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => self.boolean(),
            _ => Err(self.fail("not the start of an item")),
        }
    }

    /// RFC 8941 §4.2.4.
    fn number(&mut self) -> Result<BareItem, Malformed> {
        let negative = self.eat(b'-');
        let mut integer: i64 = 0;
        let mut digits = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            self.at += 1;
            digits += 1;
            if digits > 15 {
                return Err(self.fail("an integer of more than 15 digits"));
            }
            integer = integer * 10 + i64::from(digit - b'0');
        }
        if digits == 0 {
            return Err(self.fail("a number without digits"));
        }
        let sign = if negative { -1 } else { 1 };
        if !self.eat(b'.') {
            return Ok(BareItem::Integer(sign * integer));
        }
        if digits > 12 {
            return Err(self.fail("a decimal of more than 12 integer digits"));
        }
        let mut thousandths = 0;
        let mut fraction = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            self.at += 1;
            fraction += 1;
            if fraction > 3 {
                return Err(self.fail("a decimal of more than 3 fraction digits"));
            }
            thousandths = thousandths * 10 + i64::from(digit - b'0');
        }
        if fraction == 0 {
            return Err(self.fail("a decimal ending in '.'"));
        }
        for _ in fraction..3 {
            thousandths *= 10;
        }
        Ok(BareItem::Decimal(sign * (integer * 1000 + thousandths)))
    }

    /// RFC 8941 §4.2.5: printable ASCII, `\` escaping only `"` and `\`.
    fn string(&mut self) -> Result<BareItem, Malformed> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.fail("an unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(BareItem::String(out));
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(escaped @ (b'"' | b'\\')) => {
                            self.at += 1;
                            out.push(char::from(escaped));
                        }
                        _ => return Err(self.fail("a '\\' escaping neither '\"' nor '\\'")),
                    }
                }
                Some(byte @ 0x20..=0x7e) => {
                    self.at += 1;
                    out.push(char::from(byte));
                }
                Some(_) => return Err(self.fail("a string with a non-printable character")),
            }
        }
    }

    /// RFC 8941 §4.2.6: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
    fn token(&mut self) -> BareItem {
        let start = self.at;
        self.at += 1;
        while let Some(byte) = self.peek() {
            let tchar = byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&byte);
            if !tchar {
                break;
            }
            self.at += 1;
        }
        BareItem::Token(self.text(start))
    }

    /// RFC 8941 §4.2.7: `":" *(base64) ":"`.
    fn byte_sequence(&mut self) -> Result<BareItem, Malformed> {
        self.at += 1;
        let start = self.at;
        while let Some(byte) = self.peek() {
            if byte == b':' {
                let text = self.text(start);
                self.at += 1;
                return Ok(BareItem::ByteSequence(text));
            }
            if !(byte.is_ascii_alphanumeric() || b"+/=".contains(&byte)) {
                return Err(self.fail("a byte sequence with a character outside base64"));
            }
            self.at += 1;
        }
        Err(self.fail("an unterminated byte sequence"))
    }

    /// RFC 8941 §4.2.8: `?0` or `?1`.
    fn boolean(&mut self) -> Result<BareItem, Malformed> {
        self.at += 1;
        if self.eat(b'1') {
            Ok(BareItem::Boolean(true))
        } else if self.eat(b'0') {
            Ok(BareItem::Boolean(false))
        } else {
            Err(self.fail("a boolean other than ?0 or ?1"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: BareItem) -> Member {
        Member::Item(value, Vec::new())
    }

    #[test]
    fn the_rfc_8941_examples_parse() {
        assert_eq!(
            parse_dictionary("en=\"Applepie\", da=:w4ZibGV0w6ZydGUK:"),
            Ok(vec![
                ("en".into(), item(BareItem::String("Applepie".into()))),
                (
                    "da".into(),
                    item(BareItem::ByteSequence("w4ZibGV0w6ZydGUK".into()))
                ),
            ])
        );
        assert_eq!(
            parse_dictionary("a=?0, b, c; foo=bar"),
            Ok(vec![
                ("a".into(), item(BareItem::Boolean(false))),
                ("b".into(), item(BareItem::Boolean(true))),
                (
                    "c".into(),
                    Member::Item(
                        BareItem::Boolean(true),
                        vec![("foo".into(), BareItem::Token("bar".into()))]
                    )
                ),
            ])
        );
        assert_eq!(
            parse_dictionary("rating=1.5, feelings=(joy sadness)"),
            Ok(vec![
                ("rating".into(), item(BareItem::Decimal(1500))),
                (
                    "feelings".into(),
                    Member::InnerList(
                        vec![
                            (BareItem::Token("joy".into()), Vec::new()),
                            (BareItem::Token("sadness".into()), Vec::new()),
                        ],
                        Vec::new()
                    )
                ),
            ])
        );
        assert_eq!(
            parse_dictionary("a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid"),
            Ok(vec![
                (
                    "a".into(),
                    Member::InnerList(
                        vec![
                            (BareItem::Integer(1), Vec::new()),
                            (BareItem::Integer(2), Vec::new())
                        ],
                        Vec::new()
                    )
                ),
                ("b".into(), item(BareItem::Integer(3))),
                (
                    "c".into(),
                    Member::Item(
                        BareItem::Integer(4),
                        vec![("aa".into(), BareItem::Token("bb".into()))]
                    )
                ),
                (
                    "d".into(),
                    Member::InnerList(
                        vec![
                            (BareItem::Integer(5), Vec::new()),
                            (BareItem::Integer(6), Vec::new())
                        ],
                        vec![("valid".into(), BareItem::Boolean(true))]
                    )
                ),
            ])
        );
    }

    #[test]
    fn cache_directives_parse_with_their_types() {
        assert_eq!(
            parse_dictionary("max-age=3600, no-cache=\"set-cookie\", foo=-1.25, *x=*tok/en:1"),
            Ok(vec![
                ("max-age".into(), item(BareItem::Integer(3600))),
                (
                    "no-cache".into(),
                    item(BareItem::String("set-cookie".into()))
                ),
                ("foo".into(), item(BareItem::Decimal(-1250))),
                ("*x".into(), item(BareItem::Token("*tok/en:1".into()))),
            ])
        );
        assert_eq!(parse_dictionary(""), Ok(Vec::new()));
        assert_eq!(
            parse_dictionary("a=1 "),
            Ok(vec![("a".into(), item(BareItem::Integer(1)))]),
            "trailing spaces end the field"
        );
        assert_eq!(
            parse_dictionary("  a=1 ,\tb=2"),
            Ok(vec![
                ("a".into(), item(BareItem::Integer(1))),
                ("b".into(), item(BareItem::Integer(2))),
            ])
        );
        assert_eq!(
            parse_dictionary("a=1, b=2, a=3"),
            Ok(vec![
                ("a".into(), item(BareItem::Integer(3))),
                ("b".into(), item(BareItem::Integer(2))),
            ]),
            "the last value, at the first position"
        );
        assert_eq!(
            parse_dictionary("s=\"a \\\"quoted\\\" \\\\ word\""),
            Ok(vec![(
                "s".into(),
                item(BareItem::String("a \"quoted\" \\ word".into()))
            )])
        );
        assert_eq!(
            parse_dictionary("max-age=999999999999999"),
            Ok(vec![(
                "max-age".into(),
                item(BareItem::Integer(999_999_999_999_999))
            )])
        );
    }

    #[test]
    fn what_the_grammar_refuses_is_refused() {
        for text in [
            "max-age=10000, &&&&&",
            "MaX-aGe=3600",
            "max-age =100",
            "max-age= 100",
            "max-age=100,",
            "max-age=100,,private",
            ",max-age=1",
            "max-age=1 private",
            "1a=2",
            "a=",
            "a=1.",
            "a=1.2345",
            "a=1234567890123.5",
            "a=1234567890123456",
            "a=-",
            "a=\"unterminated",
            "a=\"bad \\escape\"",
            "a=\"tab\there\"",
            "a=:not base64!:",
            "a=:unterminated",
            "a=?2",
            "a=?",
            "a=(1 2",
            "a=(1,2)",
            "a=(1 2)x",
            "a;B=1",
            "a=@1659578233",
            "a=%\"display\"",
        ] {
            assert!(parse_dictionary(text).is_err(), "{text:?} parsed");
        }
    }
}
