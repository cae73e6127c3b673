//! Encryption at rest: every entry folio writes to Redis is sealed with
//! AES-256-GCM (`ring`), bound to the Redis key it is stored under, so
//! whoever reads Redis reads no answer, header or tag, and an entry copied
//! under another key, altered, or sealed with a key folio does not hold
//! does not open (it is then a miss). L1 holds plain entries.
//!
//! Keys come from `--encryption-keys FILE`: one `KEY_ID BASE64_32_BYTES` a
//! line, blank lines and `#` comments allowed. The first key seals; every
//! key opens, so a key is rotated by adding a new first line and removing
//! the old one after the longest TTL.
//!
//! Sealed value, version 1:
//! `u8 0xA1 | u8 n | key id (n bytes, ASCII) | nonce (12 bytes) |
//!  ciphertext of the entry's encoding | GCM tag (16 bytes)`
//! The associated data is the first `2 + n` bytes followed by the Redis key
//! (`folio:v1:<hex>`). The nonce is random (96 bits, from the system's
//! CSPRNG) for each seal; by NIST SP 800-38D's bound for random nonces a key
//! may seal up to 2^32 values, far beyond an entry's lifetime under any
//! rotation schedule. The first byte of a plain entry is its encoding's
//! version (1), never 0xA1, so a sealed value is never read as plain.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

/// The first byte of a sealed value.
pub(crate) const SEALED_V1: u8 = 0xA1;
/// Length of an AES-256 key.
const KEY_LEN: usize = 32;
/// Length of the GCM tag.
const TAG_LEN: usize = 16;
/// Longest key id (its length is one byte in the sealed value).
const MAX_ID_LEN: usize = 64;

/// A problem in the key file: where, and what (never the key's bytes).
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {problem}", path.display(), line.map(|n| format!(":{n}")).unwrap_or_default())]
pub(crate) struct KeyFileError {
    path: PathBuf,
    line: Option<usize>,
    problem: String,
}

/// One key: its id and the AES-256-GCM key.
struct Key {
    id: Box<str>,
    aead: LessSafeKey,
}

/// The keys of `--encryption-keys`: the first seals, all open.
pub(crate) struct Keyring {
    keys: Vec<Key>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The ids only: key material is never printed.
        f.debug_struct("Keyring")
            .field("ids", &self.keys.iter().map(|k| &*k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Reads and checks a key file.
    pub(crate) fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = crate::files::read_text(path, crate::files::MAX_TEXT_FILE).map_err(|e| {
            KeyFileError {
                path: path.to_path_buf(),
                line: None,
                problem: format!("cannot read the key file: {e}"),
            }
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a key file read from `path` (named in errors).
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, KeyFileError> {
        let fail = |line: Option<usize>, problem: String| KeyFileError {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let mut keys: Vec<Key> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = Some(index + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(id), Some(encoded), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(fail(
                    number,
                    "expected KEY_ID BASE64_32_BYTES (two fields)".into(),
                ));
            };
            if id.len() > MAX_ID_LEN
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(fail(
                    number,
                    format!(
                        "bad key id: expected 1 to {MAX_ID_LEN} letters, digits, '.', '_' or '-'"
                    ),
                ));
            }
            if keys.iter().any(|k| &*k.id == id) {
                return Err(fail(number, format!("key id '{id}' is given twice")));
            }
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                return Err(fail(
                    number,
                    format!(
                        "the key of '{id}' is not base64 (make one with: openssl rand -base64 32)"
                    ),
                ));
            };
            if bytes.len() != KEY_LEN {
                return Err(fail(
                    number,
                    format!(
                        "the key of '{id}' is {} bytes; AES-256 needs {KEY_LEN} (openssl rand -base64 32)",
                        bytes.len()
                    ),
                ));
            }
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| fail(number, format!("the key of '{id}' is not usable")))?;
            keys.push(Key {
                id: id.into(),
                aead: LessSafeKey::new(unbound),
            });
        }
        if keys.is_empty() {
            return Err(fail(
                None,
                "no keys: expected lines of KEY_ID BASE64_32_BYTES".into(),
            ));
        }
        Ok(Self {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The id of the key that seals.
    pub(crate) fn sealing_id(&self) -> &str {
        &self.keys[0].id
    }

    /// `plain` sealed with the first key, bound to `redis_key`; `None` only
    /// when the system's random source fails.
    pub(crate) fn seal(&self, redis_key: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let key = &self.keys[0];
        let header_len = 2 + key.id.len();
        let mut out = Vec::with_capacity(header_len + NONCE_LEN + plain.len() + TAG_LEN);
        out.push(SEALED_V1);
        // Ids are at most MAX_ID_LEN bytes: the length fits a byte.
        out.push(u8::try_from(key.id.len()).ok()?);
        out.extend_from_slice(key.id.as_bytes());
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        out.extend_from_slice(&nonce);
        let body_at = out.len();
        out.extend_from_slice(plain);
        let aad = associated_data(&out[..header_len], redis_key);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut out[body_at..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// The plain value of `sealed`, if it was sealed by one of these keys
    /// for `redis_key` and is intact; `None` for anything else, whatever
    /// the bytes.
    pub(crate) fn open(&self, redis_key: &[u8], mut sealed: Vec<u8>) -> Option<Bytes> {
        let (&version, rest) = sealed.split_first()?;
        let (&id_len, rest) = rest.split_first()?;
        if version != SEALED_V1 {
            return None;
        }
        let id_len = usize::from(id_len);
        let id = rest.get(..id_len)?;
        let key = self.keys.iter().find(|k| k.id.as_bytes() == id)?;
        let header_len = 2 + id_len;
        let body_at = header_len + NONCE_LEN;
        if sealed.len() < body_at + TAG_LEN {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[header_len..body_at]).ok()?;
        let aad = associated_data(&sealed[..header_len], redis_key);
        let plain_len = key
            .aead
            .open_in_place(nonce, Aad::from(&aad), &mut sealed[body_at..])
            .ok()?
            .len();
        // The plain bytes stay where they are: no copy.
        Some(Bytes::from(sealed).slice(body_at..body_at + plain_len))
    }
}

/// Whether a value from Redis is sealed (by whatever key).
pub(crate) fn is_sealed(value: &[u8]) -> bool {
    value.first() == Some(&SEALED_V1)
}

/// The sealed value's header, then the Redis key it is stored under.
fn associated_data(header: &[u8], redis_key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + redis_key.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(redis_key);
    aad
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A key file with the given `(id, byte)` keys (each key 32 × byte).
    pub(crate) fn key_file(keys: &[(&str, u8)]) -> String {
        keys.iter()
            .map(|(id, byte)| {
                format!(
                    "{id} {}\n",
                    base64::engine::general_purpose::STANDARD.encode([*byte; KEY_LEN])
                )
            })
            .collect()
    }

    pub(crate) fn keyring(keys: &[(&str, u8)]) -> Keyring {
        Keyring::parse(Path::new("keys"), &key_file(keys)).unwrap()
    }

    fn error(text: &str) -> String {
        Keyring::parse(Path::new("/etc/folio/keys"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_key_file_allows_comments_and_blank_lines() {
        let text = format!(
            "# rotated 2026-11\n\n{}   # not a comment here, so:\n",
            key_file(&[("k2", 2)]).trim_end()
        );
        // A trailing comment is a third field: refused, with its line.
        assert_eq!(
            Keyring::parse(Path::new("keys"), &text)
                .unwrap_err()
                .to_string(),
            "keys:3: expected KEY_ID BASE64_32_BYTES (two fields)"
        );
        let text = format!(
            "# rotated 2026-11\n\n{}\n  {}",
            key_file(&[("k2", 2)]),
            key_file(&[("k1", 1)])
        );
        let ring = Keyring::parse(Path::new("keys"), &text).unwrap();
        assert_eq!(ring.sealing_id(), "k2");
        assert_eq!(format!("{ring:?}"), r#"Keyring { ids: ["k2", "k1"] }"#);
    }

    #[test]
    fn key_file_errors_name_file_line_and_problem_but_never_the_key() {
        let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 33]);
        let message = error(&format!("# keys\nk1 {secret}\n"));
        assert_eq!(
            message,
            "/etc/folio/keys:2: the key of 'k1' is 33 bytes; AES-256 needs 32 (openssl rand -base64 32)"
        );
        assert!(!message.contains(&secret));
        assert_eq!(
            error("k1 not*base64\n"),
            "/etc/folio/keys:1: the key of 'k1' is not base64 (make one with: openssl rand -base64 32)"
        );
        assert_eq!(
            error("onlyonefield\n"),
            "/etc/folio/keys:1: expected KEY_ID BASE64_32_BYTES (two fields)"
        );
        assert!(error("bad/id AAAA\n").starts_with("/etc/folio/keys:1: bad key id"));
        let twice = format!("{}{}", key_file(&[("k", 1)]), key_file(&[("k", 2)]));
        assert_eq!(
            error(&twice),
            "/etc/folio/keys:2: key id 'k' is given twice"
        );
        assert_eq!(
            error("# nothing\n\n"),
            "/etc/folio/keys: no keys: expected lines of KEY_ID BASE64_32_BYTES"
        );
        let missing = Keyring::load(Path::new("/nonexistent/folio-keys"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("/nonexistent/folio-keys: cannot read the key file"),
            "{missing}"
        );
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plain_text() {
        let ring = keyring(&[("k1", 1)]);
        let plain = b"{\"secret\":\"the answer\"}";
        let sealed = ring.seal(b"folio:v1:aa", plain).unwrap();
        assert!(is_sealed(&sealed));
        assert_eq!(sealed.len(), 2 + 2 + NONCE_LEN + plain.len() + TAG_LEN);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            ring.open(b"folio:v1:aa", sealed.clone()).unwrap(),
            &plain[..]
        );
        // A fresh nonce each time: the same plain text never seals alike.
        assert_ne!(ring.seal(b"folio:v1:aa", plain).unwrap(), sealed);
        // Empty plain text too.
        let empty = ring.seal(b"k", b"").unwrap();
        assert_eq!(ring.open(b"k", empty).unwrap(), &b""[..]);
    }

    #[test]
    fn an_entry_opens_only_under_its_key_intact_and_with_a_known_key() {
        let ring = keyring(&[("k1", 1)]);
        let sealed = ring.seal(b"folio:v1:aa", b"body").unwrap();
        assert!(ring.open(b"folio:v1:bb", sealed.clone()).is_none(), "moved");
        for at in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            assert!(ring.open(b"folio:v1:aa", tampered).is_none(), "byte {at}");
        }
        assert!(
            ring.open(b"folio:v1:aa", sealed[..sealed.len() - 1].to_vec())
                .is_none()
        );
        let other = keyring(&[("k1", 9)]);
        assert!(
            other.open(b"folio:v1:aa", sealed.clone()).is_none(),
            "same id, other key"
        );
        let unknown = keyring(&[("k2", 1)]);
        assert!(unknown.open(b"folio:v1:aa", sealed).is_none(), "unknown id");
    }

    #[test]
    fn a_rotated_ring_opens_what_the_old_key_sealed() {
        let old = keyring(&[("k1", 1)]);
        let sealed = old.seal(b"key", b"body").unwrap();
        let rotated = keyring(&[("k2", 2), ("k1", 1)]);
        assert_eq!(rotated.open(b"key", sealed).unwrap(), &b"body"[..]);
        let resealed = rotated.seal(b"key", b"body").unwrap();
        assert_eq!(&resealed[2..4], b"k2");
        assert!(old.open(b"key", resealed).is_none());
    }
}
