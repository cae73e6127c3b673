//! Coded forms made from compressed entries: the decoded body (for clients
//! that take no coding, and for ranges) and its gzip (for gzip-only
//! clients), kept so a hot entry is decoded once, not on every hit.
//!
//! A form is found by the stored body it was made from: the address and
//! length of that body's buffer. The kept form holds the buffer too, so
//! the address cannot be reused by another entry while the form is kept,
//! and a form can never answer for a body it was not made from. The forms
//! have their own byte budget beside L1's. A form is kept from the second
//! time its body is asked for in that form (a doorkeeper, as in TinyLFU):
//! an entry read once, by a crawl or a one-off client, costs no form.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use moka::sync::Cache;

/// What moka and the allocator keep per form, weighed with it.
const FORM_OVERHEAD: u32 = 200;

/// Which form of a stored body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Made {
    Decoded,
    Gzip,
}

#[derive(Clone)]
struct Kept {
    /// Keeps the source buffer (and so its address) alive.
    _source: Bytes,
    form: Bytes,
}

/// Bits of the doorkeeper (512 KiB): sources seen once since it was last
/// cleared. At 2^19 bits, 100,000 entries read once made one in six look
/// seen, and their forms were kept (measured: 0.18 KB more RSS per entry);
/// at 2^22 it is one in forty.
const DOORKEEPER_BITS: usize = 1 << 22;

#[derive(Debug)]
struct Doorkeeper {
    bits: Box<[AtomicU64]>,
    set: AtomicUsize,
    hasher: RandomState,
}

impl Doorkeeper {
    fn new() -> Self {
        Self {
            bits: (0..DOORKEEPER_BITS / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
            set: AtomicUsize::new(0),
            hasher: RandomState::new(),
        }
    }

    /// Whether `slot` was seen before (and notes it if not). Cleared when
    /// half full, so it answers for recent traffic and stays accurate.
    fn seen_before(&self, slot: &(usize, usize, Made)) -> bool {
        let bit = usize::try_from(self.hasher.hash_one(slot)).unwrap_or(0) % DOORKEEPER_BITS;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        let before = self.bits[word].fetch_or(mask, Ordering::Relaxed);
        if before & mask != 0 {
            return true;
        }
        if self.set.fetch_add(1, Ordering::Relaxed) >= DOORKEEPER_BITS / 2 {
            self.set.store(0, Ordering::Relaxed);
            for word in &self.bits {
                word.store(0, Ordering::Relaxed);
            }
        }
        false
    }
}

#[derive(Clone)]
pub(crate) struct Forms {
    cache: Cache<(usize, usize, Made), Kept>,
    doorkeeper: std::sync::Arc<Doorkeeper>,
}

impl std::fmt::Debug for Forms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forms")
            .field("forms", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl Forms {
    /// Forms kept within `capacity` bytes.
    pub(crate) fn new(capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, kept: &Kept| {
                u32::try_from(kept.form.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(FORM_OVERHEAD)
            })
            .build();
        Self {
            cache,
            doorkeeper: std::sync::Arc::new(Doorkeeper::new()),
        }
    }

    /// The `made` form of `source`, kept from an earlier request or made by
    /// `make` now (and kept if it was asked for before).
    pub(crate) fn get_or_make<E>(
        &self,
        source: &Bytes,
        made: Made,
        make: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let slot = (source.as_ptr() as usize, source.len(), made);
        if let Some(kept) = self.cache.get(&slot) {
            return Ok(kept.form);
        }
        let form = make()?;
        if !self.doorkeeper.seen_before(&slot) {
            return Ok(form);
        }
        self.cache.insert(
            slot,
            Kept {
                _source: source.clone(),
                form: form.clone(),
            },
        );
        Ok(form)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    #[test]
    fn a_form_is_made_once_per_source_and_never_answers_for_another() {
        let forms = Forms::new(1 << 20);
        let source = Bytes::from_static(b"stored body one");
        let mut made = 0;
        for _ in 0..3 {
            let form = forms.get_or_make(&source, Made::Decoded, || {
                made += 1;
                Ok::<_, Infallible>(Bytes::from_static(b"decoded one"))
            });
            assert_eq!(form.ok().as_deref(), Some(&b"decoded one"[..]));
        }
        assert_eq!(made, 2, "made when first asked, kept from the second");

        let gzip = forms.get_or_make(&source, Made::Gzip, || {
            Ok::<_, Infallible>(Bytes::from_static(b"gzip one"))
        });
        assert_eq!(gzip.ok().as_deref(), Some(&b"gzip one"[..]));

        // Same length, other buffer: its own form.
        let other = Bytes::from(b"stored body two".to_vec());
        let form = forms.get_or_make(&other, Made::Decoded, || {
            Ok::<_, Infallible>(Bytes::from_static(b"decoded two"))
        });
        assert_eq!(form.ok().as_deref(), Some(&b"decoded two"[..]));
    }

    #[test]
    fn failures_are_not_kept() {
        let forms = Forms::new(1 << 20);
        let source = Bytes::from_static(b"damaged");
        assert!(
            forms
                .get_or_make(&source, Made::Decoded, || Err("bad"))
                .is_err()
        );
        let form = forms.get_or_make(&source, Made::Decoded, || {
            Ok::<_, &str>(Bytes::from_static(b"fine"))
        });
        assert_eq!(form.ok().as_deref(), Some(&b"fine"[..]));
    }
}
