//! Content codings of stored bodies: an answer worth compressing is
//! compressed once, when it is stored, and that one form lives in L1 and
//! L2; each client then gets the form its `Accept-Encoding` allows.
//!
//! The stored form is brotli: on small JSON it is about a fifth smaller
//! than gzip, and clients that take brotli (every browser, most HTTP
//! libraries when asked) get the stored bytes as they are. A client that
//! takes gzip but not brotli gets the body decoded and gzipped at a fast
//! level; one that takes neither gets the decoded body. Decoding is bounded:
//! a stored body never decodes to more than the policy let it be stored at.

use std::io::{Read, Write};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};

/// Bodies under this are sent as they are: the coding's framing and a
/// client's decoding would cost more than the bytes saved.
pub(crate) const MIN_COMPRESSED_BODY: usize = 256;
/// Bodies over this are stored as they came: compressing one (and making
/// a gzip form of it for a client that takes no brotli) costs tens of
/// milliseconds on a thread that serves every other request, and one
/// client could keep both threads doing that for large answers.
pub(crate) const MAX_COMPRESSED_BODY: usize = 1 << 20;
/// Brotli quality 5: where the ratio on 1 KB JSON flattens (410 bytes for
/// 2.5 KB, against 437 at quality 1).
const BROTLI_QUALITY: i32 = 5;
/// Largest brotli window: 2^18 bytes, enough for bodies of hundreds of KB,
/// while a decoder never sets aside more than that.
const BROTLI_MAX_WINDOW_BITS: u32 = 18;
/// gzip level for transcoding on the fly: fast, most of the ratio.
const GZIP_LEVEL: u32 = 1;

/// A content coding folio stores or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Br,
    Gzip,
}

impl Coding {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Gzip => "gzip",
        }
    }

    pub(crate) fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }

    /// The coding a `Content-Encoding` value names, if folio knows it.
    pub(crate) fn from_content_encoding(value: &[u8]) -> Option<Self> {
        match value {
            b"br" => Some(Self::Br),
            b"gzip" | b"x-gzip" => Some(Self::Gzip),
            _ => None,
        }
    }
}

/// What a client is sent of a stored compressed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// The stored bytes as they are.
    Stored,
    /// Decoded, then gzipped.
    Gzip,
    /// Decoded.
    Identity,
}

/// Whether an answer with these headers and body should be stored
/// compressed: a textual type (JSON, text, XML, JavaScript), not already
/// coded by the upstream, large enough to gain and small enough to cost
/// little.
pub(crate) fn worth_compressing(headers: &HeaderMap, body: &[u8]) -> bool {
    if !(MIN_COMPRESSED_BODY..=MAX_COMPRESSED_BODY).contains(&body.len())
        || headers.contains_key(header::CONTENT_ENCODING)
    {
        return false;
    }
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("/json")
        || essence.ends_with("+json")
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
        || essence == "application/javascript"
        || essence == "application/x-ndjson"
        || essence == "image/svg+xml"
}

/// The smallest brotli window (10 to [`BROTLI_MAX_WINDOW_BITS`] bits) that
/// holds `len` bytes.
fn window_bits(len: usize) -> i32 {
    let needed = usize::BITS - len.saturating_sub(1).leading_zeros();
    i32::try_from(needed.clamp(10, BROTLI_MAX_WINDOW_BITS)).unwrap_or(10)
}

/// `body` brotli-compressed, when that saves at least an eighth of it.
pub(crate) fn compress(body: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(body.len() / 2);
    // The window and the encoder's tables sized to the body, not to the
    // largest body: a 1 KB answer costs kilobytes to compress, not megabytes.
    let lgwin = window_bits(body.len());
    let mut params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin,
        size_hint: body.len(),
        mode: brotli::enc::backward_references::BrotliEncoderMode::BROTLI_MODE_TEXT,
        ..brotli::enc::BrotliEncoderParams::default()
    };
    // The match finder's table too. Left to the crate, a window of 64 KB
    // or less at this quality gets its default table of 32 MB, zeroed on
    // every call (11 ms and 32 MB to store a 2.5 KB answer); sized here it
    // is 2^(lgwin - 1) buckets of 16, 64 KB for a 1 KB body.
    params.hasher.bucket_bits = (lgwin - 1).clamp(10, 15);
    params.hasher.block_bits = 4;
    params.hasher.num_last_distances_to_check = 4;
    brotli::BrotliCompress(&mut &body[..], &mut out, &params).ok()?;
    (out.len() <= body.len() - body.len() / 8).then(|| Bytes::from(out))
}

/// Why a stored body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("the stored body is not valid {0}")]
    Invalid(&'static str),
    #[error("the stored body decodes to more than {0} bytes")]
    TooLarge(usize),
}

/// `body` decoded from `coding`, at most `limit` bytes.
pub(crate) fn decode(coding: Coding, body: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(3).min(limit));
    let read = match coding {
        Coding::Br => brotli::Decompressor::new(body, 4096)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        Coding::Gzip => flate2::read::GzDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
    };
    if read.is_err() {
        return Err(DecodeError::Invalid(coding.as_str()));
    }
    if out.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

/// `body` gzipped at a fast level.
pub(crate) fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 2 + 32),
        flate2::Compression::new(GZIP_LEVEL),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Which form of a body stored in `stored` coding a request accepts
/// (RFC 9110 §12.5.3). No `Accept-Encoding` takes the decoded body: clients
/// that do not ask for a coding are rarely ready for one.
pub(crate) fn negotiate(headers: &HeaderMap, stored: Coding) -> Form {
    let mut stored_q = None;
    let mut gzip_q = None;
    let mut any_q = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for member in value.split(',') {
            let mut params = member.split(';');
            let coding = params.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            let q = params
                .filter_map(|p| p.trim().split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, q)| qvalue(q.trim()));
            let Some(q) = q else {
                continue;
            };
            let slot = if coding.eq_ignore_ascii_case(stored.as_str()) {
                &mut stored_q
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut gzip_q
            } else if coding == "*" {
                &mut any_q
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |held: u16| held.max(q)));
        }
    }
    let accepts = |q: Option<u16>| q.or(any_q).is_some_and(|q| q > 0);
    if accepts(stored_q) {
        Form::Stored
    } else if stored != Coding::Gzip && accepts(gzip_q) {
        Form::Gzip
    } else {
        Form::Identity
    }
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed
/// (RFC 9110 §12.4.2: `( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`).
pub(crate) fn qvalue(q: &str) -> Option<u16> {
    let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: usize) -> Vec<u8> {
        let mut body = String::from("[");
        for i in 0..n {
            body.push_str(&format!(
                r#"{{"id":{i},"title":"Book {i}","author":"Author {}","price":{}.99,"in_stock":true}},"#,
                i % 17,
                i % 50
            ));
        }
        body.push(']');
        body.into_bytes()
    }

    fn accepting(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("")),
        );
        headers
    }

    #[test]
    fn compressed_bodies_decode_to_themselves_in_both_codings() {
        let body = json(30);
        let stored = compress(&body).unwrap_or_else(|| panic!("JSON compresses"));
        assert!(
            stored.len() < body.len() / 2,
            "{} of {}",
            stored.len(),
            body.len()
        );
        let decoded = decode(Coding::Br, &stored, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&decoded[..], &body[..]);
        let gzipped = gzip(&decoded);
        let back = decode(Coding::Gzip, &gzipped, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back[..], &body[..]);
    }

    #[test]
    fn bodies_too_large_to_compress_cheaply_are_stored_as_they_came() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let json = |len: usize| format!("[{}]", "1,".repeat(len / 2)).into_bytes();
        assert!(worth_compressing(&headers, &json(MAX_COMPRESSED_BODY - 16)));
        assert!(!worth_compressing(
            &headers,
            &json(MAX_COMPRESSED_BODY + 16)
        ));
    }

    #[test]
    fn incompressible_bodies_are_not_compressed() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect();
        assert_eq!(compress(&noise), None);
    }

    #[test]
    fn decoding_is_bounded_and_garbage_is_an_error() {
        let body = vec![b'a'; 100_000];
        let stored = compress(&body).unwrap_or_else(|| panic!("compresses"));
        assert!(matches!(
            decode(Coding::Br, &stored, 99_999),
            Err(DecodeError::TooLarge(99_999))
        ));
        assert_eq!(
            decode(Coding::Br, &stored, 100_000).map(|b| b.len()).ok(),
            Some(100_000)
        );
        assert!(decode(Coding::Br, b"not brotli at all", 1000).is_err());
        assert!(decode(Coding::Gzip, b"not gzip", 1000).is_err());
    }

    #[test]
    fn only_textual_uncoded_bodies_large_enough_are_worth_compressing() {
        let mut headers = HeaderMap::new();
        let body = json(10);
        assert!(!worth_compressing(&headers, &body), "no type");
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(worth_compressing(&headers, &body));
        assert!(!worth_compressing(&headers, b"{}"), "too small");
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert!(!worth_compressing(&headers, &body));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        assert!(worth_compressing(&headers, &body));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(
            !worth_compressing(&headers, &body),
            "the upstream's coding stays"
        );
    }

    #[test]
    fn negotiation_follows_accept_encoding() {
        let cases = [
            ("br", Form::Stored),
            ("gzip, deflate, br, zstd", Form::Stored),
            ("gzip", Form::Gzip),
            ("gzip, br;q=0", Form::Gzip),
            ("BR;Q=0.5", Form::Stored),
            ("*", Form::Stored),
            ("*;q=0, gzip", Form::Gzip),
            ("identity", Form::Identity),
            ("br;q=0, gzip;q=0", Form::Identity),
            ("br;q=2", Form::Identity),
            ("br;q=0.0001", Form::Identity),
            ("deflate", Form::Identity),
            ("", Form::Identity),
        ];
        for (value, form) in cases {
            assert_eq!(negotiate(&accepting(value), Coding::Br), form, "{value:?}");
        }
        assert_eq!(negotiate(&HeaderMap::new(), Coding::Br), Form::Identity);
        assert_eq!(negotiate(&accepting("gzip"), Coding::Gzip), Form::Stored);
        assert_eq!(negotiate(&accepting("br"), Coding::Gzip), Form::Identity);
    }
}
