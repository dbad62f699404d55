//! The Kafka client as every binary sets it up: one [`client_builder`] that applies the
//! security settings ([`KafkaSecurity`]), one [`ensure_topic`], and one reading of a failed
//! connection ([`ConnectFailure`]) that tells a setting to fix from a broker that is not there.
//!
//! rskafka's futures need a tokio reactor; this module only builds and awaits them, on
//! whatever runtime the calling binary has (tokio in central, async-std's `tokio1` in the edge).

use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};

use crate::kafka_security::{KafkaSecurity, KafkaSecurityError, SaslMechanism};

/// A client builder for `brokers` with the TLS and SASL settings applied (reads their files).
/// `deadline` bounds rskafka's internal retries of one request (`None`: retry forever).
pub fn client_builder(
    brokers: Vec<String>,
    client_id: &str,
    security: &KafkaSecurity,
    deadline: Option<Duration>,
) -> Result<ClientBuilder, KafkaSecurityError> {
    let mut builder = ClientBuilder::new(brokers)
        .client_id(client_id)
        .backoff_config(BackoffConfig {
            deadline,
            ..BackoffConfig::default()
        });
    if let Some(tls) = security.tls_client_config()? {
        builder = builder.tls_config(tls);
    }
    if let Some(sasl) = security.sasl()? {
        let credentials = Credentials::new(sasl.username, sasl.password);
        builder = builder.sasl_config(match sasl.mechanism {
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        });
    }
    Ok(builder)
}

/// Why a binary must not start: its Kafka settings cannot work.
#[derive(Debug, thiserror::Error)]
pub enum StartupCheckError {
    #[error("Kafka security settings: {0}")]
    Settings(#[from] KafkaSecurityError),
    #[error("cannot use Kafka at {brokers}: {why}")]
    Misconfigured { brokers: String, why: String },
}

/// One bounded connection attempt at start-up (`within` bounds each step; the whole check
/// takes at most about twice that): `Ok(None)` when Kafka answers, `Ok(Some(reason))` when it
/// is merely unreachable (a binary goes on and retries), and an error for settings that cannot
/// work: untrusted certificate, refused client certificate, wrong password, TLS against a
/// plaintext listener. Runs on the caller's tokio reactor (the edge's is async-std's `tokio1`).
pub async fn check_at_start(
    brokers: &[String],
    client_id: &str,
    security: &KafkaSecurity,
    within: Duration,
) -> Result<Option<String>, StartupCheckError> {
    let misconfigured = |why: String| StartupCheckError::Misconfigured {
        brokers: brokers.join(","),
        why,
    };
    if let Some(tls) = security.tls_client_config()? {
        let (list, timeout) = (brokers.to_vec(), within);
        let probe = tokio::task::spawn_blocking(move || probe_tls(&list, tls, timeout));
        match probe.await {
            Ok(Ok(())) => {}
            Ok(Err(ConnectFailure::Misconfigured(why))) => return Err(misconfigured(why)),
            Ok(Err(ConnectFailure::Unavailable(why))) => return Ok(Some(why)),
            Err(join) => return Ok(Some(format!("TLS probe failed: {join}"))),
        }
    }
    let attempt = client_builder(brokers.to_vec(), client_id, security, Some(within))?.build();
    // `within` bounds rskafka's sleeps between retries; the attempts themselves add to it.
    match tokio::time::timeout(within * 2 + Duration::from_secs(2), attempt).await {
        Ok(Ok(_client)) => Ok(None),
        Ok(Err(error)) => match classify(&error, security) {
            ConnectFailure::Misconfigured(why) => Err(misconfigured(why)),
            ConnectFailure::Unavailable(why) => Ok(Some(why)),
        },
        Err(_) => Ok(Some(format!(
            "no answer within {:?}",
            within * 2 + Duration::from_secs(2)
        ))),
    }
}

/// Create `topic` with `partitions` unless it exists; returns its partition count. Another
/// client creating it at the same moment is not an error.
pub async fn ensure_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> Result<i32, KafkaError> {
    if let Some(count) = partition_count(client, topic).await? {
        return Ok(count);
    }
    match client
        .controller_client()?
        .create_topic(topic, partitions, 1, 5_000)
        .await
    {
        Ok(())
        | Err(KafkaError::ServerError {
            protocol_error: ProtocolError::TopicAlreadyExists,
            ..
        }) => {}
        Err(e) => return Err(e),
    }
    Ok(partition_count(client, topic).await?.unwrap_or(partitions))
}

/// The topic's partition count, `None` when the broker does not know the topic.
pub async fn partition_count(client: &Client, topic: &str) -> Result<Option<i32>, KafkaError> {
    Ok(client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX)))
}

/// Why connecting to Kafka failed, as far as the client can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// A setting is wrong (certificate not trusted, wrong password, TLS against a plaintext
    /// listener): retrying cannot help, so a binary refuses to start with this message.
    Misconfigured(String),
    /// The broker did not answer or dropped the connection: it may be down or restarting; a
    /// binary keeps retrying. The message may carry a hint at a setting.
    Unavailable(String),
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Misconfigured(m) | Self::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Read a connection error in the light of the settings used. rskafka reports TLS and SASL
/// failures inside its retry error's text (`all retries failed: … Source: …`), so this reads
/// the text; the phrases are rustls', rsasl's and the broker's own.
pub fn classify(error: &impl std::fmt::Display, security: &KafkaSecurity) -> ConnectFailure {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    let protocol = security.protocol;
    if has("invalid peer certificate") || has("certificate") && has("not valid for name") {
        return ConnectFailure::Misconfigured(format!(
            "the broker's TLS certificate is not accepted: it must be signed by a CA in \
             TA_KAFKA_TLS_CA_FILE and name the host of each address in TA_KAFKA_BROKERS and of \
             what the broker advertises ({text})"
        ));
    }
    // rustls names the alert the broker sent (`received fatal alert: CertificateRequired`).
    if has("certificaterequired")
        || has("certificate required")
        || has("badcertificate")
        || has("bad certificate")
        || has("unknownca")
        || has("unknown ca")
    {
        return ConnectFailure::Misconfigured(format!(
            "the broker refused this client's TLS certificate (mutual TLS): set \
             TA_KAFKA_TLS_CERT_FILE and TA_KAFKA_TLS_KEY_FILE to a certificate its CA signed \
             ({text})"
        ));
    }
    // Only an answer that says so is a wrong credential; a connection dropped during the SASL
    // exchange (a broker restarting) reads "Sasl handshake failed: Request error: IO …".
    if has("unsupported sasl mechanism") || has("unsupportedsaslmechanism") {
        let mechanism = security.sasl_mechanism;
        return ConnectFailure::Misconfigured(format!(
            "the broker does not offer SASL {mechanism} (TA_KAFKA_SASL_MECHANISM) ({text})"
        ));
    }
    if has("sasl")
        && (has("invalid proof")
            || has("invalid-proof")
            || has("unknown user")
            || has("unknown-user")
            || has("authentication failed")
            || has("saslauthenticationfailed"))
    {
        let user = security.sasl_username.as_deref().unwrap_or("?");
        let mechanism = security.sasl_mechanism;
        return ConnectFailure::Misconfigured(format!(
            "SASL {mechanism} authentication as `{user}` failed: wrong user name or password \
             (TA_KAFKA_SASL_USERNAME, TA_KAFKA_SASL_PASSWORD_FILE), or the broker has no such \
             user ({text})"
        ));
    }
    if protocol.uses_tls()
        && (has("corrupt message")
            || has("invalidcontenttype")
            || has("invalid content type")
            || has("invalidmessage")
            || has("tls handshake eof")
            || has("peer is incompatible")
            || has("record overflow"))
    {
        return ConnectFailure::Misconfigured(format!(
            "the broker did not complete a TLS handshake: is TA_KAFKA_BROKERS a plaintext \
             listener? (TA_KAFKA_SECURITY_PROTOCOL={protocol}) ({text})"
        ));
    }
    let hint = if !protocol.uses_tls() && (has("end of file") || has("eof") || has("reset")) {
        " (the broker closed the connection: if it is down, it will be retried; if it is a TLS \
         listener, set TA_KAFKA_SECURITY_PROTOCOL=ssl or sasl_ssl)"
    } else {
        ""
    };
    ConnectFailure::Unavailable(format!("{text}{hint}"))
}

/// Connect to the first broker of `brokers` that accepts TCP and complete a TLS handshake
/// with `config`, each step bounded by `timeout`. Blocking (run it on a blocking thread).
///
/// rskafka waits without end for a handshake that a plaintext listener never answers (tansu
/// reads a ClientHello as the length of a huge Kafka frame), and reports certificate problems
/// only inside its retry error; this says which it is, at once. After the handshake it reads
/// briefly: under TLS 1.3 a broker that wants a client certificate says so only then.
pub fn probe_tls(
    brokers: &[String],
    config: std::sync::Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> ConnectFailureOr {
    use std::io::{ErrorKind, Read};
    use std::net::{TcpStream, ToSocketAddrs};

    let mut unreachable = Vec::new();
    for broker in brokers {
        let Some((host, port)) = broker.rsplit_once(':') else {
            return Err(ConnectFailure::Misconfigured(format!(
                "`{broker}` in TA_KAFKA_BROKERS is not host:port"
            )));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(port) = port.parse::<u16>() else {
            return Err(ConnectFailure::Misconfigured(format!(
                "`{broker}` in TA_KAFKA_BROKERS has no valid port"
            )));
        };
        let addrs = match (host, port).to_socket_addrs() {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                unreachable.push(format!("{broker}: {e}"));
                continue;
            }
        };
        let Some(mut tcp) = addrs
            .iter()
            .find_map(|a| TcpStream::connect_timeout(a, timeout).ok())
        else {
            unreachable.push(format!("{broker}: no TCP connection"));
            continue;
        };
        let _ = tcp.set_read_timeout(Some(timeout));
        let _ = tcp.set_write_timeout(Some(timeout));
        let name = match rustls::pki_types::ServerName::try_from(host.to_owned()) {
            Ok(n) => n,
            Err(e) => {
                return Err(ConnectFailure::Misconfigured(format!(
                    "`{host}` in TA_KAFKA_BROKERS is not a host name TLS can check: {e}"
                )));
            }
        };
        let mut tls = rustls::ClientConnection::new(config.clone(), name)
            .map_err(|e| ConnectFailure::Misconfigured(format!("TLS client: {e}")))?;
        let mut handshaken = false;
        let outcome = (|| {
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp)?;
            }
            handshaken = true;
            // A broker refusing the client's certificate (TLS 1.3) sends its alert now.
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(300)));
            let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
            match stream.read(&mut [0u8; 1]) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
                Err(e) => Err(e),
                Ok(_) => Ok(()),
            }
        })();
        let Err(e) = outcome else {
            return Ok(());
        };
        let transient = matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        );
        return Err(match e.kind() {
            // A TLS server answers a ClientHello at once, also across a slow link.
            ErrorKind::WouldBlock | ErrorKind::TimedOut if !handshaken => {
                ConnectFailure::Misconfigured(format!(
                    "{broker} accepted the connection but did not complete a TLS handshake \
                     within {timeout:?}: is it a plaintext listener? (TLS is on because of \
                     TA_KAFKA_SECURITY_PROTOCOL; on a very slow link raise \
                     TA_KAFKA_STARTUP_CHECK_SECS)"
                ))
            }
            ErrorKind::UnexpectedEof if !handshaken => ConnectFailure::Misconfigured(format!(
                "{broker} closed the connection during the TLS handshake: it did not complete \
                 a TLS handshake; is it a plaintext listener? ({e})"
            )),
            _ if transient || handshaken && !is_alert(&e) => {
                ConnectFailure::Unavailable(format!("{broker}: {e}"))
            }
            _ => classify_tls(broker, &e),
        });
    }
    Err(ConnectFailure::Unavailable(unreachable.join("; ")))
}

/// The outcome of [`probe_tls`].
pub type ConnectFailureOr = Result<(), ConnectFailure>;

/// Whether an I/O error carries a TLS alert or certificate verdict (as opposed to the
/// connection simply ending).
fn is_alert(error: &std::io::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    text.contains("alert") || text.contains("certificate")
}

/// A TLS failure rustls explains: certificate verdicts and alerts are settings to fix;
/// anything else is a broker that may come back.
fn classify_tls(broker: &str, error: &std::io::Error) -> ConnectFailure {
    let security = KafkaSecurity {
        protocol: crate::kafka_security::SecurityProtocol::Ssl,
        ..KafkaSecurity::default()
    };
    match classify(&format!("{broker}: {error}"), &security) {
        ConnectFailure::Unavailable(text) => {
            ConnectFailure::Misconfigured(format!("the TLS handshake with {broker} failed: {text}"))
        }
        misconfigured => misconfigured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka_security::SecurityProtocol;

    fn security(protocol: SecurityProtocol) -> KafkaSecurity {
        KafkaSecurity {
            protocol,
            sasl_username: Some("edge-eu".into()),
            ..KafkaSecurity::default()
        }
    }

    fn misconfigured(text: &str, protocol: SecurityProtocol) -> String {
        match classify(&text, &security(protocol)) {
            ConnectFailure::Misconfigured(why) => why,
            other => panic!("{text:?} read as {other:?}"),
        }
    }

    // The texts are what rskafka 0.6 reported against tansu and stunnel in
    // tests/e2e/kafka_security.rs.
    #[test]
    fn a_wrong_password_names_the_user_and_the_settings() {
        let text = "Connection error: all retries failed: Retry exceeded deadline. Source: Sasl \
                    handshake failed: Sasl session error: internal mechanism error: SCRAM outcome \
                    error: invalid proof";
        let why = misconfigured(text, SecurityProtocol::SaslSsl);
        assert!(why.contains("authentication as `edge-eu` failed"), "{why}");
        assert!(why.contains("TA_KAFKA_SASL_PASSWORD_FILE"), "{why}");
    }

    #[test]
    fn a_refused_client_certificate_points_at_the_client_certificate_settings() {
        let text = "cannot sync versions: Request error: Connection is poisoned: Cannot read \
                    framed message: Cannot read data: received fatal alert: CertificateRequired";
        let why = misconfigured(text, SecurityProtocol::Ssl);
        assert!(why.contains("TA_KAFKA_TLS_CERT_FILE"), "{why}");
    }

    #[test]
    fn an_untrusted_certificate_points_at_the_ca_file() {
        let text = "127.0.0.1:9093: invalid peer certificate: UnknownIssuer";
        let why = misconfigured(text, SecurityProtocol::Ssl);
        assert!(why.contains("TA_KAFKA_TLS_CA_FILE"), "{why}");
    }

    #[test]
    fn a_connection_dropped_during_sasl_is_not_a_wrong_password() {
        let text = "Connection error: all retries failed: Retry exceeded deadline. Source: Sasl \
                    handshake failed: Request error: IO error: Connection reset by peer (os error 104)";
        assert!(matches!(
            classify(&text, &security(SecurityProtocol::SaslSsl)),
            ConnectFailure::Unavailable(_)
        ));
    }

    #[test]
    fn a_broker_that_is_down_is_unavailable_not_misconfigured() {
        let refused = "Connection error: all retries failed: Retry exceeded deadline. Source: \
                       error connecting to broker \"127.0.0.1:1\": IO Error: Connection refused \
                       (os error 111)";
        assert!(matches!(
            classify(&refused, &security(SecurityProtocol::SaslSsl)),
            ConnectFailure::Unavailable(_)
        ));
        // A plaintext client whose connection is cut (a broker restarting, or a TLS listener)
        // keeps retrying, with a hint.
        let eof = "Cannot read data: unexpected end of file";
        match classify(&eof, &security(SecurityProtocol::Plaintext)) {
            ConnectFailure::Unavailable(why) => {
                assert!(why.contains("if it is a TLS listener"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
