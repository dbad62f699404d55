//! `ta-bench null`: the ceilings for the edge benchmark, servers whose handlers read the body
//! and answer 202 `{"status":"accepted"}` — no auth, no parsing, no enrichment, no spool.
//!
//! - `--server tide`: a tide app on async-std served exactly like `ta-edge` serves it
//!   (`ta_edge::http1`: hyper's HTTP/1 codec, the request-deadline stream, `TCP_NODELAY`): the
//!   cost of the edge's own HTTP stack;
//! - `--server tide-h1`: the same tide app on tide's own codec, async-h1 (the codec hyper
//!   replaced in the edge);
//! - `--server hyper-async-std`: hyper 1 with a null service on async-std's executor and
//!   reactor: the codec without tide;
//! - `--server hyper`: hyper 1 (HTTP/1.1, keep-alive) on a multi-threaded tokio runtime: what a
//!   lean Rust HTTP server reaches on this machine.

use std::convert::Infallible;
use std::net::SocketAddr;

use async_std::io::ReadExt;
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Server {
    Tide,
    TideH1,
    HyperAsyncStd,
    Hyper,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "null",
    about = "A null HTTP handler: the edge benchmark's ceiling"
)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Server::Tide)]
    server: Server,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

const ACCEPTED: &str = r#"{"status":"accepted"}"#;

async fn tide_accept(mut req: tide::Request<()>) -> tide::Result {
    let mut body = Vec::new();
    req.take_body().read_to_end(&mut body).await?;
    Ok(tide::Response::builder(202)
        .content_type(tide::http::mime::JSON)
        .body(ACCEPTED)
        .build())
}

fn tide_app() -> tide::Server<()> {
    let mut app = tide::new();
    app.at("/v1/collect").post(tide_accept);
    app.at("/v1/batch").post(tide_accept);
    app
}

/// Accept connections on async-std and hand each to `serve` with its peer address.
async fn accept_loop<F, Fut>(listen: SocketAddr, serve: F) -> anyhow::Result<()>
where
    F: Fn(async_std::net::TcpStream, Option<SocketAddr>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = async_std::net::TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        async_std::task::spawn(serve(stream, peer));
    }
    Ok(())
}

/// The tide app as `ta-edge` serves it (`ta_edge::http1` behind the deadline stream).
async fn serve_tide(listen: SocketAddr) -> anyhow::Result<()> {
    let app = tide_app();
    accept_loop(listen, move |stream, peer| {
        let app = app.clone();
        async move {
            let local = stream.local_addr().ok();
            let stream =
                ta_edge::conn::GuardedStream::new(stream, std::time::Duration::from_secs(30));
            let _ = ta_edge::http1::serve_connection(stream, peer, local, app).await;
        }
    })
    .await
}

/// The tide app on tide's own codec, async-h1.
async fn serve_tide_h1(listen: SocketAddr) -> anyhow::Result<()> {
    let app = tide_app();
    accept_loop(listen, move |stream, peer| {
        let app = app.clone();
        async move {
            let _ = async_h1::accept(stream, |mut req| {
                req.set_peer_addr(peer);
                let app = app.clone();
                async move { app.respond(req).await }
            })
            .await;
        }
    })
    .await
}

/// A null hyper service on async-std's executor and reactor.
async fn serve_hyper_async_std(listen: SocketAddr) -> anyhow::Result<()> {
    accept_loop(listen, |stream, _| async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(
                smol_hyper::rt::FuturesIo::new(stream),
                hyper::service::service_fn(hyper_accept),
            )
            .await;
    })
    .await
}

async fn hyper_accept(
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as the edge must.
    let _ = req.into_body().collect().await;
    let mut res = hyper::Response::new(Full::new(Bytes::from_static(ACCEPTED.as_bytes())));
    *res.status_mut() = hyper::StatusCode::ACCEPTED;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

async fn serve_hyper(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper::service::service_fn(hyper_accept),
                )
                .await;
        });
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.server {
        Server::Tide => async_std::task::block_on(serve_tide(args.listen)),
        Server::TideH1 => async_std::task::block_on(serve_tide_h1(args.listen)),
        Server::HyperAsyncStd => async_std::task::block_on(serve_hyper_async_std(args.listen)),
        Server::Hyper => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve_hyper(args.listen)),
    }
}
