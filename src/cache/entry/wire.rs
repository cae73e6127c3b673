//! The encoding's pieces: a bounds-checked cursor over it, `u16`-prefixed
//! strings, and times as integers since the epoch.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

/// A cursor over an encoded entry; every read is bounds-checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], at: usize) -> Self {
        Self { buf, at }
    }

    /// Where the next read starts, as an entry keeps it.
    pub(super) fn offset(&self) -> Option<u16> {
        u16::try_from(self.at).ok()
    }

    pub(super) fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let taken = self.buf.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.array().map(u8::from_le_bytes)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// A `u16`-prefixed string.
    pub(super) fn str(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(len.into())
    }

    /// Where the next `u16`-prefixed string lies, past it.
    pub(super) fn str_range(&mut self) -> Option<Range<usize>> {
        let len = self.u16()?;
        let start = self.at;
        self.take(len.into())?;
        Some(start..self.at)
    }
}

pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Microseconds since the epoch: purge marks and request times must order
/// events a millisecond apart.
pub(crate) fn unix_us(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

pub(super) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

pub(crate) fn from_unix_us(us: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_micros(us))
        .unwrap_or(UNIX_EPOCH)
}

pub(super) fn secs32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
/// Writes a `u16`-prefixed string; `None` when it is too long for one.
pub(super) fn put_str(out: &mut BytesMut, bytes: &[u8]) -> Option<()> {
    out.put_u16_le(u16::try_from(bytes.len()).ok()?);
    out.put_slice(bytes);
    Some(())
}
