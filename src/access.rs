//! The access log: one line per request, written off the request path.
//!
//! A finished request formats its line straight into a shared buffer (a
//! short lock, no allocation, no system call). A writer thread takes the
//! whole buffer every [`FLUSH_EVERY`], or sooner once it holds [`WAKE_AT`]
//! bytes, and writes it out. When the writer cannot keep up (a stalled
//! stdout, a slow disk) the buffer stops at its bound ([`DEFAULT_BUFFER`]
//! unless `--access-log-buffer` says otherwise): later lines
//! are dropped and counted (`folio_access_log_dropped_total`), and no
//! request ever waits for the log. On shutdown what is buffered is written
//! before folio exits. `--access-log FILE` appends to a file and reopens it
//! on SIGHUP, as logrotate expects.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;

use crate::metrics::Metrics;

/// The writer writes at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A buffer this large wakes the writer before its time.
const WAKE_AT: usize = 64 << 10;
/// Past this many buffered bytes (by default), lines are dropped.
pub(crate) const DEFAULT_BUFFER: usize = 8 << 20;
/// How long shutdown waits for the last lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Where access lines go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessTarget {
    /// No access log.
    #[default]
    Off,
    Stdout,
    /// Appended to this file, reopened on SIGHUP.
    File(PathBuf),
}

impl FromStr for AccessTarget {
    type Err = String;

    /// `on` (stdout), `off`, or a file path.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "" => Err("expected on, off or a file path".into()),
            "on" | "stdout" => Ok(Self::Stdout),
            "off" => Ok(Self::Off),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

/// How an access line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessFormat {
    /// `2026-12-01T12:00:00.123Z 127.0.0.1 "GET /p" 200 hit L1 …`
    #[default]
    Human,
    /// One JSON object a line.
    Json,
}

/// What one line says about a request.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    pub(crate) at: SystemTime,
    pub(crate) client: IpAddr,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) status: u16,
    pub(crate) result: &'static str,
    pub(crate) layer: &'static str,
    pub(crate) took: Duration,
    pub(crate) upstream: Duration,
    pub(crate) endpoint: &'a str,
}

/// The access log of a running folio.
#[derive(Debug)]
pub(crate) struct AccessLog {
    shared: Arc<Shared>,
    format: AccessFormat,
    /// Bytes buffered before lines are dropped.
    bound: usize,
    metrics: Arc<Metrics>,
    /// Told when the writer has written everything and stopped.
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    buffer: Mutex<Vec<u8>>,
    wake: Condvar,
    reopen: AtomicBool,
    closing: AtomicBool,
}

/// Where the writer writes.
enum Sink {
    Stdout(std::io::Stdout),
    File(PathBuf, std::fs::File),
}

impl Sink {
    fn open(target: &AccessTarget) -> std::io::Result<Option<Self>> {
        Ok(match target {
            AccessTarget::Off => None,
            AccessTarget::Stdout => Some(Self::Stdout(std::io::stdout())),
            AccessTarget::File(path) => Some(Self::File(path.clone(), append(path)?)),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Self::File(_, file) => file.write_all(bytes),
        }
    }

    /// A new file at the path (the old one was moved away by logrotate).
    fn reopen(&mut self) {
        if let Self::File(path, file) = self {
            match append(path) {
                Ok(new) => *file = new,
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), "cannot reopen the access log; still writing to the old file");
                }
            }
        }
    }
}

fn append(path: &PathBuf) -> std::io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLog {
    /// Starts the writer; `None` when the log is off. Fails when the file
    /// cannot be opened.
    pub(crate) fn start(
        target: &AccessTarget,
        format: AccessFormat,
        bound: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Option<Self>> {
        let Some(mut sink) = Sink::open(target)? else {
            return Ok(None);
        };
        let shared = Arc::new(Shared::default());
        let (done, stopped) = std::sync::mpsc::channel();
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("folio-access-log".into())
            .spawn(move || {
                writer.run(&mut sink);
                let _ = done.send(());
            })?;
        Ok(Some(Self {
            shared,
            format,
            bound,
            metrics,
            done: Mutex::new(Some(stopped)),
        }))
    }

    /// Adds one line; drops (and counts) it when the writer is too far
    /// behind. Never blocks on the output.
    pub(crate) fn record(&self, line: &Line<'_>) {
        let mut buffer = self
            .shared
            .buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if buffer.len() >= self.bound {
            drop(buffer);
            self.metrics
                .access_log_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = buffer.len();
        format_line(&mut buffer, self.format, line);
        let wake = before < WAKE_AT && buffer.len() >= WAKE_AT;
        drop(buffer);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Reopens the file (after logrotate moved it), at the next write.
    pub(crate) fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// Writes what is buffered and stops the writer; waits at most
    /// [`CLOSE_WAIT`] (a stalled stdout cannot hold the exit).
    pub(crate) fn close(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done {
            let _ = done.recv_timeout(CLOSE_WAIT);
        }
    }
}

impl Shared {
    /// The writer thread: takes the buffer whenever there is something in
    /// it (at most [`FLUSH_EVERY`] apart) and writes it out.
    fn run(&self, sink: &mut Sink) {
        let mut spare = Vec::with_capacity(WAKE_AT);
        loop {
            let closing = {
                let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
                if buffer.is_empty() && !self.closing.load(Ordering::Relaxed) {
                    buffer = self
                        .wake
                        .wait_timeout(buffer, FLUSH_EVERY)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                std::mem::swap(&mut *buffer, &mut spare);
                self.closing.load(Ordering::Relaxed)
            };
            if self.reopen.swap(false, Ordering::Relaxed) {
                sink.reopen();
            }
            if !spare.is_empty() {
                if let Err(error) = sink.write(&spare) {
                    tracing::debug!(%error, "access log lines could not be written");
                }
                spare.clear();
                if spare.capacity() > 4 * WAKE_AT {
                    spare = Vec::with_capacity(WAKE_AT);
                }
            }
            if closing && self.buffer.lock().map_or(true, |b| b.is_empty()) {
                return;
            }
        }
    }
}

/// Writes `line` and a newline to `out`.
fn format_line(out: &mut Vec<u8>, format: AccessFormat, line: &Line<'_>) {
    let mut text = Text(out);
    let ms = line.took.as_secs_f64() * 1000.0;
    let upstream_ms = line.upstream.as_secs_f64() * 1000.0;
    match format {
        AccessFormat::Human => {
            timestamp(&mut text, line.at);
            let _ = write!(text, " {} \"{} ", line.client, line.method);
            escaped(&mut text, line.path, false);
            let _ = write!(
                text,
                "\" {} {} {} tenant=",
                line.status, line.result, line.layer
            );
            escaped(
                &mut text,
                if line.tenant.is_empty() {
                    "-"
                } else {
                    line.tenant
                },
                false,
            );
            text.0.extend_from_slice(b" endpoint=");
            escaped(&mut text, line.endpoint, false);
            let _ = writeln!(text, " {ms:.3}ms upstream={upstream_ms:.3}ms");
        }
        AccessFormat::Json => {
            text.0.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(&mut text, line.at);
            let _ = write!(
                text,
                "\",\"target\":\"folio::access\",\"client\":\"{}\",\"method\":\"{}\",\"path\":\"",
                line.client, line.method
            );
            escaped(&mut text, line.path, true);
            text.0.extend_from_slice(b"\",\"tenant\":\"");
            escaped(&mut text, line.tenant, true);
            let _ = write!(
                text,
                "\",\"status\":{},\"result\":\"{}\",\"layer\":\"{}\",\"ms\":{ms:.3},\"upstream_ms\":{upstream_ms:.3},\"endpoint\":\"",
                line.status, line.result, line.layer
            );
            escaped(&mut text, line.endpoint, true);
            text.0.extend_from_slice(b"\"}\n");
        }
    }
}

/// `fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `text` with quotes, backslashes and control characters escaped (JSON
/// string escapes; in the human format `"` and `\` are escaped alike, so a
/// line always splits the same way).
fn escaped(out: &mut Text<'_>, text: &str, json: bool) {
    for c in text.chars() {
        match c {
            '"' => out.0.extend_from_slice(b"\\\""),
            '\\' => out.0.extend_from_slice(b"\\\\"),
            // Beyond ASCII, a viewer may show a look-alike of a quote or
            // a space, text laid out backwards, or nothing at all: every
            // line is ASCII, the rest escaped (in UTF-16, as JSON reads it).
            c if c.is_control() || !c.is_ascii() => {
                for unit in c.encode_utf16(&mut [0u16; 2]) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            ' ' if !json => out.0.extend_from_slice(b"%20"),
            c => {
                let mut utf8 = [0u8; 4];
                out.0.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-12-01T12:00:00.123Z`.
fn timestamp(out: &mut Text<'_>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), in unsigned form.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(path: &str, tenant: &str) -> Vec<u8> {
        let method = Method::GET;
        let mut out = Vec::new();
        let l = Line {
            at: UNIX_EPOCH + Duration::from_millis(1_764_590_400_123),
            client: IpAddr::from([127, 0, 0, 1]),
            method: &method,
            path,
            tenant,
            status: 200,
            result: "hit",
            layer: "L1",
            took: Duration::from_micros(123),
            upstream: Duration::ZERO,
            endpoint: "/p/{id}",
        };
        format_line(&mut out, AccessFormat::Json, &l);
        out
    }

    #[test]
    fn json_lines_parse_whatever_the_path() {
        for path in ["/p/1", "/p/\"quoted\"\\", "/p/\u{1}\n", "/p/é"] {
            let out = line(path, "acme");
            assert_eq!(out.last(), Some(&b'\n'));
            let json: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
            assert_eq!(json["path"], path, "{}", String::from_utf8_lossy(&out));
            assert_eq!(json["timestamp"], "2025-12-01T12:00:00.123Z");
            assert_eq!(json["status"], 200);
        }
    }

    #[test]
    fn nothing_in_a_path_changes_how_a_line_reads() {
        let path = "/x\u{2028}FORGED 200\u{202e}lmth.\u{2066}\u{feff}\u{ff02}\u{2002}\u{e0041}é";
        for format in [AccessFormat::Json, AccessFormat::Human] {
            let method = Method::GET;
            let mut out = Vec::new();
            let l = Line {
                at: UNIX_EPOCH,
                client: IpAddr::from([127, 0, 0, 1]),
                method: &method,
                path,
                tenant: "acme",
                status: 200,
                result: "hit",
                layer: "L1",
                took: Duration::ZERO,
                upstream: Duration::ZERO,
                endpoint: "/x",
            };
            format_line(&mut out, format, &l);
            let text = String::from_utf8(out).unwrap_or_default();
            assert!(text.is_ascii(), "{text}");
            assert!(
                text.contains("\\u2028FORGED") && text.contains("\\u202e"),
                "{text}"
            );
        }
        let json: serde_json::Value =
            serde_json::from_slice(&line(path, "acme")).unwrap_or_default();
        assert_eq!(json["path"], path);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let mut out = Vec::new();
        timestamp(&mut Text(&mut out), UNIX_EPOCH);
        assert_eq!(out, b"1970-01-01T00:00:00.000Z");
        let mut out = Vec::new();
        timestamp(
            &mut Text(&mut out),
            UNIX_EPOCH + Duration::from_secs(951_782_400), // 2000-02-29
        );
        assert_eq!(out, b"2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn targets_parse() {
        assert_eq!("on".parse(), Ok(AccessTarget::Stdout));
        assert_eq!("off".parse(), Ok(AccessTarget::Off));
        assert_eq!(
            "/var/log/folio.log".parse(),
            Ok(AccessTarget::File("/var/log/folio.log".into()))
        );
        assert!("".parse::<AccessTarget>().is_err());
    }
}
