//! Plain TCP on both sides of folio, for bugs that depend on bytes on the
//! wire: a client that sends what a hyper client would refuse to (duplicate
//! or odd headers, bodies on GETs, backslashes), and an origin that behaves
//! like many real servers do: it answers first, then reads the body the
//! request declared, on the same keep-alive connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Uri;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::REQUEST_TIMEOUT;

/// One request as the raw origin read it.
#[derive(Debug, Clone)]
pub(crate) struct RawSeen {
    pub(crate) method: String,
    pub(crate) target: String,
    /// Names lower-cased, in arrival order, duplicates kept.
    pub(crate) headers: Vec<(String, String)>,
}

impl RawSeen {
    /// The last value of a header, as servers that keep the last one read it
    /// (`_` read as `-`, as CGI-style servers do); "" when absent.
    pub(crate) fn last(&self, name: &str) -> &str {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n.replace('_', "-") == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

/// An origin on a plain TCP socket: keep-alive, answers each request with
/// a JSON stamp of the tenant it served (`X-Tenant-ID`, the last one) and
/// the target, cacheable for a minute (a `206` of it for a GET with one
/// `bytes=first-last` range), then reads the declared body.
#[derive(Debug)]
pub(crate) struct RawOrigin {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<RawSeen>>>,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (log, counter) = (Arc::clone(&seen), Arc::clone(&count));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, counter) = (Arc::clone(&log), Arc::clone(&counter));
                tokio::spawn(async move {
                    let _ = serve_connection(stream, log, counter).await;
                });
            }
        });
        Self {
            addr,
            seen,
            count,
            task,
        }
    }

    pub(crate) fn uri(&self) -> Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    pub(crate) fn seen(&self) -> Vec<RawSeen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn last(&self) -> RawSeen {
        self.seen()
            .last()
            .cloned()
            .expect("the origin saw no request")
    }

    pub(crate) fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(
    stream: TcpStream,
    log: Arc<Mutex<Vec<RawSeen>>>,
    count: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some(seen) = read_head(&mut reader).await? else {
            return Ok(());
        };
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        log.lock().unwrap().push(seen.clone());
        // The tenant first, so that any prefix of the body names it.
        let body = format!(
            "{{\"tenant\":{},\"target\":{},\"n\":{n}}}",
            serde_json::Value::from(seen.last("x-tenant-id")),
            serde_json::Value::from(seen.target.as_str()),
        );
        let whole = body.as_bytes();
        let (status, content_range, body) = match byte_range(&seen, whole.len()) {
            Some((first, last)) => (
                "206 Partial Content",
                format!("content-range: bytes {first}-{last}/{}\r\n", whole.len()),
                &whole[first..=last],
            ),
            None => ("200 OK", String::new(), whole),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\n{content_range}content-length: {}\r\n\r\n",
            body.len()
        );
        write.write_all(head.as_bytes()).await?;
        if seen.method != "HEAD" {
            write.write_all(body).await?;
        }
        write.flush().await?;
        // Then the body the request declared, as Go, nginx and Node do.
        let length: usize = seen.last("content-length").parse().unwrap_or(0);
        if length > 0 {
            let mut sink = vec![0; length];
            reader.read_exact(&mut sink).await?;
        } else if seen.last("transfer-encoding").contains("chunked") {
            read_chunked(&mut reader).await?;
        }
    }
}

/// The one `bytes=first-last` range of a GET, within `len` bytes.
fn byte_range(seen: &RawSeen, len: usize) -> Option<(usize, usize)> {
    let (first, last) = seen.last("range").strip_prefix("bytes=")?.split_once('-')?;
    let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
    (seen.method == "GET" && first <= last)
        .then_some((first, last.min(len.checked_sub(1)?)))
        .filter(|(first, last)| first <= last)
}

pub(crate) async fn read_head<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<RawSeen>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let target = words.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Ok(Some(RawSeen {
        method,
        target,
        headers,
    }))
}

async fn read_chunked<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).await?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(std::io::Error::other)?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).await?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A response as a raw client read it.
#[derive(Debug)]
pub(crate) struct RawGot {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawGot {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `head` (request line and header lines, without the blank line)
/// and `body` as written, on a new connection, and reads one response.
pub(crate) async fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> RawGot {
    raw_request_from(Ipv4Addr::LOCALHOST.into(), addr, head, body).await
}

/// [`raw_request`] from the loopback address `from` (any of 127.0.0.0/8),
/// for a client that folio sees at another address.
pub(crate) async fn raw_request_from(
    from: IpAddr,
    addr: SocketAddr,
    head: &str,
    body: &[u8],
) -> RawGot {
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let mut bytes = head
            .replace('\n', "\r\n")
            .trim_end()
            .to_owned()
            .into_bytes();
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes.extend_from_slice(body);
        stream.write_all(&bytes).await.unwrap();
        let mut reader = BufReader::new(stream);
        read_response(&mut reader).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {head:?} within {REQUEST_TIMEOUT:?}"))
}

async fn read_response<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> RawGot {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(reader).await.unwrap()
    } else if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        body
    } else {
        Vec::new()
    };
    RawGot {
        status,
        headers,
        body,
    }
}

/// An origin on a plain TCP socket that reads each connection's request
/// (one read) and then plays `script` on the connection: for origins that
/// misbehave in their framing or their timing. Aborting the handle it
/// returns stops it.
pub(crate) async fn scripted_origin<F, Fut>(script: F) -> (Uri, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                script(stream).await;
            });
        }
    });
    (format!("http://{addr}").parse().unwrap(), task)
}

/// An origin on a plain TCP socket that answers every request with a
/// JSON body and `cache_control` until the flag it returns is set, then
/// closes each connection as soon as a request arrives, without a word:
/// an upstream that cannot be reached, as a client sees one.
pub(crate) async fn closing_origin(cache_control: &'static str) -> (Uri, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&down);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let flag = Arc::clone(&flag);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if flag.load(Ordering::SeqCst) {
                        return; // closes the connection without an answer
                    }
                    let body = r#"{"v":"good"}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: {cache_control}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}").parse().unwrap(), down)
}

/// Whether the server closes an idle connection on its own within `limit`.
pub(crate) async fn closed_within(mut stream: TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let read_until_eof = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_until_eof).await.is_ok()
}
