//! The ceiling for the edge benchmark: tide on async-std, served exactly like `ta-edge` serves
//! (same accept loop shape, `TCP_NODELAY`, async-h1), with handlers that read the body and
//! answer 202 — no auth, no parsing, no enrichment, no spool.

use std::net::SocketAddr;

use async_std::io::ReadExt;
use async_std::net::TcpListener;
use clap::Parser;
use futures::StreamExt;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

async fn accept(mut req: tide::Request<()>) -> tide::Result {
    let mut body = Vec::new();
    req.take_body().read_to_end(&mut body).await?;
    Ok(tide::Response::builder(202)
        .content_type(tide::http::mime::JSON)
        .body(r#"{"status":"accepted"}"#)
        .build())
}

#[async_std::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut app = tide::new();
    app.at("/v1/collect").post(accept);
    app.at("/v1/batch").post(accept);
    let listener = TcpListener::bind(args.listen).await?;
    // The benchmark reads the port from this line.
    println!("listening {}", listener.local_addr()?);
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let app = app.clone();
        async_std::task::spawn(async move {
            let _ = async_h1::accept(stream, |mut req| {
                req.set_peer_addr(peer);
                let app = app.clone();
                async move { app.respond(req).await }
            })
            .await;
        });
    }
    Ok(())
}
