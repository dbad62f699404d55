//! One `GET /v1/registry/snapshot`: hyper's HTTP/1 client over a tokio TCP stream, wrapped in
//! TLS (tokio-rustls, ring) for https, with a connect timeout, a timeout on the whole exchange
//! and the body capped at [`MAX_SNAPSHOT_BYTES`]. One connection per fetch: a poll every few
//! seconds gains nothing from keeping one open, and a fresh one sees a moved central at once.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, AUTHORIZATION, HOST, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::{FollowSettings, RegistryFollowError, RegistryUrl};
use super::outcome::FetchError;
use crate::kafka_security::client_config_trusting;
use crate::snapshot::{MAX_SNAPSHOT_BYTES, SignedSnapshot};

/// How long opening the TCP connection may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole fetch may take: connect, TLS, request and the body.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches the signed snapshot with this node's credential.
pub(crate) struct SnapshotClient {
    url: RegistryUrl,
    /// `Bearer <credential>`, marked sensitive (hyper leaves it out of its debug output).
    authorization: HeaderValue,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    pub(crate) request_timeout: Duration,
}

impl fmt::Debug for SnapshotClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotClient")
            .field("url", &self.url.to_string())
            .field("authorization", &"<redacted>")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl SnapshotClient {
    /// Reads the token file and, for https, the CA file.
    pub(crate) fn new(settings: &FollowSettings) -> Result<Self, RegistryFollowError> {
        let token = settings.read_token()?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| RegistryFollowError::TokenNotHeader(settings.token_file.clone()))?;
        authorization.set_sensitive(true);
        let tls = match (&settings.ca_file, settings.url.https) {
            (Some(ca_file), true) => {
                let config =
                    client_config_trusting("TA_REGISTRY_CA_FILE", ca_file)?.with_no_client_auth();
                let name = match settings.url.ip() {
                    Some(ip) => ServerName::IpAddress(ip.into()),
                    None => ServerName::try_from(settings.url.host.to_string()).map_err(|_| {
                        RegistryFollowError::BadUrl {
                            reason: "its host is not a valid TLS server name".into(),
                        }
                    })?,
                };
                Some((TlsConnector::from(Arc::new(config)), name))
            }
            (None, true) => return Err(RegistryFollowError::MissingCaFile(settings.url.clone())),
            (_, false) => None,
        };
        Ok(Self {
            url: settings.url.clone(),
            authorization,
            tls,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// The signed snapshot as central sent it (not verified yet).
    pub(crate) async fn fetch(&self) -> Result<SignedSnapshot, FetchError> {
        let body = tokio::time::timeout(self.request_timeout, self.get())
            .await
            .map_err(|_| FetchError::Timeout(self.request_timeout))??;
        Ok(SignedSnapshot::from_json(&body)?)
    }

    async fn get(&self) -> Result<Vec<u8>, FetchError> {
        let connect = async {
            match self.url.ip() {
                Some(ip) => TcpStream::connect(SocketAddr::new(ip, self.url.port)).await,
                None => TcpStream::connect((self.url.host.to_string(), self.url.port)).await,
            }
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| FetchError::Timeout(CONNECT_TIMEOUT))?
            .map_err(FetchError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(FetchError::Tls)?;
                self.exchange(TokioIo::new(tls)).await
            }
        }
    }

    /// The request on an open connection, and the response's body.
    async fn exchange<I>(&self, io: I) -> Result<Vec<u8>, FetchError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        let request = hyper::Request::get(self.url.snapshot_target())
            .header(HOST, self.url.authority())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("ta-registry-follower/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .expect("RegistryUrl::parse checked the request target");
        let exchange = async {
            let response = sender.send_request(request).await?;
            match response.status().as_u16() {
                200 => read_capped(response.into_body()).await,
                status @ (401 | 403) => Err(FetchError::Unauthorized(status)),
                status => Err(FetchError::Status(status)),
            }
        };
        tokio::pin!(conn);
        // The connection is driven beside the exchange; it ends only when the exchange is
        // dropped, or early with an error.
        tokio::select! {
            result = exchange => result,
            Err(error) = &mut conn => Err(error.into()),
        }
    }
}

/// The body, refused as soon as it passes [`MAX_SNAPSHOT_BYTES`].
async fn read_capped(mut body: Incoming) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > MAX_SNAPSHOT_BYTES {
                return Err(FetchError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}
