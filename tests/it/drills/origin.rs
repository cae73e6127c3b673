//! An origin on a plain TCP socket that answers well until told to fail,
//! and then fails the way real servers do: a reset mid-body, a body shorter
//! than its `Content-Length`, a status line that is not HTTP, an answer
//! slower than folio's upstream timeout, or a burst of 5xx.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use http::Uri;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the origin answers, switched while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// `200`, the stamped body, keep-alive.
    Good,
    /// The head and half the body, then a TCP reset.
    Reset,
    /// `Content-Length` of the whole body, half of it sent, then close.
    Truncate,
    /// A status line that is not HTTP, then close.
    Garbage,
    /// The head (even requests) or the body (odd ones) comes after
    /// [`SLOW_BY`], past folio's upstream timeout.
    Slow,
    /// `500` and `503` in turn, with a JSON body, keep-alive.
    ServerErrors,
}

impl Mode {
    fn from_u8(n: u8) -> Self {
        [
            Self::Good,
            Self::Reset,
            Self::Truncate,
            Self::Garbage,
            Self::Slow,
            Self::ServerErrors,
        ]
        .into_iter()
        .find(|m| *m as u8 == n)
        .unwrap_or(Self::Good)
    }
}

/// How late a slow origin answers.
pub(crate) const SLOW_BY: Duration = Duration::from_secs(1);

/// The body the origin answers for `tenant` and `path`: it names both, in
/// the first bytes, and is padded to about 1 KiB so that a cut is visible.
pub(crate) fn stamp(tenant: &str, path: &str) -> String {
    let seed = format!("{tenant}{path}");
    let filler: String = seed.chars().cycle().take(960).collect();
    format!(
        "{{\"tenant\":{},\"path\":{},\"filler\":{}}}",
        serde_json::Value::from(tenant),
        serde_json::Value::from(path),
        serde_json::Value::from(filler)
    )
}

#[derive(Debug)]
pub(crate) struct FaultyOrigin {
    pub(crate) addr: SocketAddr,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyOrigin {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Good as u8));
        let requests = Arc::new(AtomicUsize::new(0));
        let (task_mode, task_requests) = (Arc::clone(&mode), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (mode, requests) = (Arc::clone(&task_mode), Arc::clone(&task_requests));
                tokio::spawn(async move {
                    let _ = serve(stream, mode, requests).await;
                });
            }
        });
        Self {
            addr,
            mode,
            requests,
            task,
        }
    }

    pub(crate) fn uri(&self) -> Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// Answers every request read from now on in `mode`.
    pub(crate) fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests read so far.
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One keep-alive connection: requests (GETs without bodies) are answered
/// in order, each in the mode current when it was read.
async fn serve(
    stream: TcpStream,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    // The answers below are written in pieces; without this, Nagle's
    // algorithm and folio's delayed ACKs would add 40 ms to some of them.
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    loop {
        let Some((path, tenant)) = read_request(&mut stream).await? else {
            return Ok(());
        };
        let n = requests.fetch_add(1, Ordering::SeqCst);
        let body = stamp(&tenant, &path);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=1\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let half = &body.as_bytes()[..body.len() / 2];
        let socket = stream.get_mut();
        match Mode::from_u8(mode.load(Ordering::SeqCst)) {
            Mode::Good => {
                socket.write_all(format!("{head}{body}").as_bytes()).await?;
            }
            Mode::Reset => {
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(half).await?;
                socket.flush().await?;
                // Linger 0: closing sends RST instead of FIN. (Deprecated
                // because a nonzero linger blocks the thread on drop; a
                // zero one does not.)
                #[allow(deprecated)]
                socket.set_linger(Some(Duration::ZERO))?;
                return Ok(());
            }
            Mode::Truncate => {
                socket.write_all(head.as_bytes()).await?;
                socket.write_all(half).await?;
                socket.shutdown().await?;
                return Ok(());
            }
            Mode::Garbage => {
                socket
                    .write_all(b"HTTP/1.1 2OO OKAY-ISH\r\nx: \x01\r\n\r\n{\"tenant\":\"globex\"}")
                    .await?;
                socket.shutdown().await?;
                return Ok(());
            }
            Mode::Slow => {
                if n.is_multiple_of(2) {
                    tokio::time::sleep(SLOW_BY).await;
                    socket.write_all(head.as_bytes()).await?;
                } else {
                    socket.write_all(head.as_bytes()).await?;
                    socket.flush().await?;
                    tokio::time::sleep(SLOW_BY).await;
                }
                socket.write_all(body.as_bytes()).await?;
            }
            Mode::ServerErrors => {
                let (status, reason) = if n.is_multiple_of(2) {
                    (500, "Internal Server Error")
                } else {
                    (503, "Service Unavailable")
                };
                let body = r#"{"error":"overloaded"}"#;
                let answer = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await?;
            }
        }
        socket.flush().await?;
    }
}

/// Reads one request head: its path and `X-Tenant-ID`; `None` at the end
/// of the connection.
async fn read_request(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(String, String)>> {
    Ok(crate::support::raw::read_head(reader)
        .await?
        .map(|seen| (seen.target.clone(), seen.last("x-tenant-id").to_owned())))
}
