//! HTTP/1.1 for the edge: hyper's codec on async-std, in front of the tide application.
//!
//! tide stays the application framework (routes, middleware, `Request`/`Response`, the error
//! mapping); only the wire codec is hyper's, which is much cheaper than tide's own (async-h1:
//! a byte-wise `read_until`, the stream shared between reader and writer through locks; the
//! edge benchmark's ceiling rows compare them). Each hyper request becomes an `http_types`
//! request (tide's type) whose body streams from hyper's, and tide's response goes back as
//! one buffered body (every edge response is small and built in memory).
//!
//! Refused with an answer, not a dropped connection: a head over [`MAX_HEAD_BYTES`] or with
//! more than [`MAX_HEADERS`] headers (431, hyper), a `Host` that does not make a URL or would
//! change the path (400 with the reason: `Host: x/evil` must not route `/healthz` to
//! `/evil/healthz`). Header values with bytes outside
//! ASCII (RFC 9110's obs-text: a user agent naming a device in its own script) reach tide with
//! those bytes percent-encoded, since tide's header values are ASCII only (its own codec
//! panics on them).
//! The transport limits ([`crate::conn`]) sit below, in the stream hyper reads.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncBufRead, AsyncRead};
use http_body_util::Full;
use hyper::body::{Body as _, Bytes, Incoming};
use tide::http::{self as http_types, Url};

use crate::conn::GuardedStream;

/// Largest request head (request line and headers) read; larger ones get 431. hyper's read
/// buffer cannot be smaller than 8 KiB, and this leaves room for a long query string on
/// `GET /t.js`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most headers in one request; more get 431.
pub const MAX_HEADERS: usize = 128;

/// Serve one connection until the client closes it, the request deadline passes (the
/// stream's reads fail) or a response asks to close it (`Connection: close`).
pub async fn serve_connection<S>(
    stream: GuardedStream,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    app: tide::Server<S>,
) -> Result<(), hyper::Error>
where
    S: Clone + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(&app, req, peer, local).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(smol_hyper::rt::FuturesIo::new(stream), service)
        .await
}

async fn respond<S>(
    app: &tide::Server<S>,
    req: hyper::Request<Incoming>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
) -> hyper::Response<Full<Bytes>>
where
    S: Clone + Send + Sync + 'static,
{
    let req = match to_tide(req, peer, local) {
        Ok(req) => req,
        Err(reason) => return bad_request(&reason),
    };
    match app.respond::<_, http_types::Response>(req).await {
        Ok(res) => hyper_response(res).await,
        Err(error) => {
            tracing::warn!(message = "The application failed a request.", %error);
            plain(500, "internal error")
        }
    }
}

/// hyper's request as tide's, its body streaming from hyper's.
fn to_tide(
    req: hyper::Request<Incoming>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
) -> Result<http_types::Request, String> {
    let (parts, body) = req.into_parts();
    let len = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    let body = http_types::Body::from_reader(BodyReader::new(body), len);
    tide_request(&parts, body, peer, local)
}

/// A request head as tide's request: method, URL (from `Host` and the request target),
/// headers and addresses, with `body`. Public for the benchmarks (`bench/benches/hot.rs`).
pub fn tide_request(
    parts: &hyper::http::request::Parts,
    body: http_types::Body,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
) -> Result<http_types::Request, String> {
    let method: http_types::Method = parts
        .method
        .as_str()
        .parse()
        .map_err(|_| format!("unsupported method {}", parts.method))?;
    let url = url_of(&parts.uri, parts.headers.get(hyper::header::HOST))?;
    let mut out = http_types::Request::new(method, url);
    out.set_version(Some(match parts.version {
        hyper::Version::HTTP_10 => http_types::Version::Http1_0,
        _ => http_types::Version::Http1_1,
    }));
    out.set_peer_addr(peer);
    out.set_local_addr(local);
    for (name, value) in &parts.headers {
        let value = http_types::headers::HeaderValue::from_bytes(ascii_value(value.as_bytes()))
            .map_err(|_| format!("header {name} could not be read"))?;
        let name = http_types::headers::HeaderName::from_bytes(name.as_str().into())
            .map_err(|_| format!("header name {name} is not ASCII"))?;
        out.append_header(name, value);
    }
    out.set_body(body);
    Ok(out)
}

/// A header value as ASCII: bytes ≥ 0x80 (hyper has already refused control characters other
/// than tab) are percent-encoded, so the value stays distinct and deterministic.
fn ascii_value(value: &[u8]) -> Vec<u8> {
    if value.is_ascii() {
        return value.to_vec();
    }
    let mut out = Vec::with_capacity(value.len() + 16);
    for &b in value {
        if b.is_ascii() {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// The request URL tide routes on: `http://{Host}{target}`. A `Host` that would change the
/// path (it holds `/`, `?`, `#` or `@`) or does not parse is refused, not guessed at.
fn url_of(uri: &hyper::Uri, host: Option<&hyper::header::HeaderValue>) -> Result<Url, String> {
    if uri.scheme().is_some() {
        // Absolute form (`POST http://edge/v1/collect HTTP/1.1`), as proxies send it.
        return Url::parse(&uri.to_string()).map_err(|e| format!("invalid request target: {e}"));
    }
    let host = match host.map(|h| h.to_str()) {
        None => "localhost",
        Some(Ok(h)) if !h.is_empty() && !h.contains(['/', '?', '#', '@', '\\']) => h,
        Some(_) => return Err("invalid Host header".into()),
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    Url::parse(&format!("http://{host}{target}")).map_err(|e| format!("invalid Host header: {e}"))
}

/// tide's response as hyper's: status, headers and the whole body. Public for the benchmarks.
pub async fn hyper_response(mut res: http_types::Response) -> hyper::Response<Full<Bytes>> {
    let body = match res.take_body().into_bytes().await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(message = "A response body could not be read.", %error);
            return plain(500, "internal error");
        }
    };
    let mut out = hyper::Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() =
        hyper::StatusCode::from_u16(res.status().into()).unwrap_or(hyper::StatusCode::OK);
    let headers = out.headers_mut();
    for (name, values) in res.iter() {
        let Ok(name) = hyper::header::HeaderName::from_bytes(name.as_str().as_bytes()) else {
            continue;
        };
        for value in values {
            if let Ok(value) = hyper::header::HeaderValue::from_str(value.as_str()) {
                headers.append(name.clone(), value);
            }
        }
    }
    out
}

fn bad_request(reason: &str) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::json!({"error": "bad_request", "message": reason}).to_string();
    let mut res = plain(400, "");
    *res.body_mut() = Full::new(Bytes::from(body));
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    // The request's body was not read: the connection cannot carry another request.
    res.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    res
}

fn plain(status: u16, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut res = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    res
}

/// hyper's request body as the `AsyncBufRead` tide's body takes: each data frame is handed
/// out as it arrives, without another copy.
struct BodyReader {
    /// hyper's body is `Send` but not `Sync`; tide's body type asks for both, and the reader
    /// is only ever used through `&mut`.
    body: sync_wrapper::SyncWrapper<Incoming>,
    chunk: Bytes,
}

impl BodyReader {
    fn new(body: Incoming) -> Self {
        Self {
            body: sync_wrapper::SyncWrapper::new(body),
            chunk: Bytes::new(),
        }
    }
}

impl AsyncBufRead for BodyReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.chunk.is_empty() {
            match Pin::new(this.body.get_mut()).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => break,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
            }
        }
        Poll::Ready(Ok(&this.chunk))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        let _ = this.chunk.split_to(amt.min(this.chunk.len()));
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(available)) => available,
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> hyper::Uri {
        s.parse().unwrap()
    }

    fn host(s: &str) -> hyper::header::HeaderValue {
        hyper::header::HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn the_url_comes_from_the_host_and_the_target() {
        let url = url_of(&uri("/v1/collect?key=k1"), Some(&host("edge.example:8080"))).unwrap();
        assert_eq!(url.as_str(), "http://edge.example:8080/v1/collect?key=k1");
        assert_eq!(url_of(&uri("/healthz"), None).unwrap().path(), "/healthz");
        let absolute = url_of(&uri("http://edge.example/t.js"), Some(&host("other"))).unwrap();
        assert_eq!(absolute.as_str(), "http://edge.example/t.js");
    }

    #[test]
    fn header_values_outside_ascii_are_percent_encoded() {
        assert_eq!(ascii_value(b"Mozilla/5.0"), b"Mozilla/5.0");
        assert_eq!(
            ascii_value("Mözilla 华".as_bytes()),
            b"M%C3%B6zilla %E5%8D%8E"
        );
        assert_eq!(ascii_value(b"a\xffb"), b"a%FFb");
    }

    #[test]
    fn a_host_that_would_change_the_path_is_refused() {
        for bad in ["x/evil", "x?y", "u@x", "x#y", "", "a b"] {
            let err = url_of(&uri("/v1/collect"), Some(&host(bad))).unwrap_err();
            assert!(err.contains("Host"), "{bad}: {err}");
        }
    }
}
