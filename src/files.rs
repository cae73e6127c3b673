//! Reading the files an operator names (certificates, keys, the config,
//! policies): regular files of a bounded size. A path pointed at a device,
//! a pipe or a runaway file fails with a message, where reading it would
//! hang a reload or take folio's memory while it serves.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The largest certificate, key or CA file read (a system CA bundle is
/// about 200 KiB).
pub(crate) const MAX_TLS_FILE: u64 = 4 << 20;
/// The largest config, key or policy file read.
pub(crate) const MAX_TEXT_FILE: u64 = 8 << 20;

/// The bytes of `path`: a regular file (after symbolic links) of at most
/// `limit` bytes.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    // Opened without waiting (a pipe would wait for a writer), then asked
    // what was opened: a path swapped between a look and an open cannot
    // slip a pipe or a device in.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", limit >> 20),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
pub(crate) fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("folio-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let file = dir.join("small.pem");
        std::fs::write(&file, b"0123456789").unwrap_or_default();
        assert_eq!(read_bounded(&file, 10).ok(), Some(b"0123456789".to_vec()));
        let over = read_bounded(&file, 9).unwrap_err();
        assert!(over.to_string().contains("larger than"), "{over}");
        for device in ["/dev/zero", "/dev/null"] {
            let refused = read_bounded(Path::new(device), MAX_TLS_FILE).unwrap_err();
            assert!(
                refused.to_string().contains("not a regular file"),
                "{refused}"
            );
        }
        assert!(read_bounded(&dir, 10).is_err(), "a directory");
        let pipe = dir.join("pipe.pem");
        let made = std::process::Command::new("mkfifo").arg(&pipe).status();
        if made.is_ok_and(|status| status.success()) {
            // Before, opening it waited for a writer: for ever.
            let refused = read_bounded(&pipe, 10).unwrap_err();
            assert!(
                refused.to_string().contains("not a regular file"),
                "{refused}"
            );
        }
        std::fs::write(&file, [0xff, 0xfe]).unwrap_or_default();
        assert!(read_text(&file, 10).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
