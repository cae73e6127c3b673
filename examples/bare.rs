//! The stack's ceiling for the benchmarks: a bare hyper server (the same
//! hyper, hyper-util and tokio as folio, built the same way) that answers
//! every request with one fixed body, as a cache hit would, and does
//! nothing else. `benches/compare.py` runs it beside folio.
//!
//!     cargo run --release --example bare -- --listen 127.0.0.1:8090 --body product.json

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:8090".parse()?;
    let mut body = Bytes::from(vec![b'x'; 1024]);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?.parse()?,
            "--body" => {
                body = Bytes::from(std::fs::read(args.next().ok_or("--body needs a file")?)?)
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    // As folio does: one thread when pinned to one CPU.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(listen, body))
}

async fn serve(listen: SocketAddr, body: Bytes) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let json = HeaderValue::from_static("application/json");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (body, json) = (body.clone(), json.clone());
        tokio::spawn(async move {
            let service = service_fn(move |_: Request<Incoming>| {
                let mut response = Response::new(Full::new(body.clone()));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, json.clone());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
