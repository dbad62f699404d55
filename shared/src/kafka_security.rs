//! How `ta-edge` and `ta-loader` authenticate to Kafka and protect the link: the settings both
//! take (`TA_KAFKA_SECURITY_PROTOCOL` and friends, named as Kafka's own client settings are),
//! their validation, and the TLS client configuration built from the PEM files they name.
//!
//! | protocol          | TLS | SASL | for                                                       |
//! |-------------------|-----|------|-----------------------------------------------------------|
//! | `plaintext`       |     |      | loopback and private networks only (the dev setup)        |
//! | `ssl`             | yes |      | TLS, optionally with a client certificate (mutual TLS)    |
//! | `sasl_plaintext`  |     | yes  | a private network that still wants one user per client    |
//! | `sasl_ssl`        | yes | yes  | across the internet: what the compose deployment uses     |
//!
//! SASL mechanisms: SCRAM-SHA-256 and SCRAM-SHA-512 (the password never crosses the wire).
//! PLAIN is not offered: no broker these machines can run accepts it, so it could not be tested.
//! The password is read from a file (`TA_KAFKA_SASL_PASSWORD_FILE`, e.g. a compose secret),
//! never from the environment, so it does not show up in `docker inspect` or `/proc/*/environ`.
//!
//! The Kafka client (rskafka) takes the result of [`KafkaSecurity::tls_client_config`] and
//! [`KafkaSecurity::sasl`]; wiring them in is the binaries' job, as this crate runs no I/O but
//! reading files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// `TA_KAFKA_SECURITY_PROTOCOL`: Kafka's `security.protocol`, lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        })
    }
}

/// `TA_KAFKA_SASL_MECHANISM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[default]
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        })
    }
}

/// The Kafka security settings of a binary (flattened into its config).
#[derive(Debug, Clone, Default, Args)]
pub struct KafkaSecurity {
    /// How the link to Kafka is protected: plaintext (loopback/dev only), ssl (TLS), sasl_ssl
    /// (TLS and a SCRAM user; what a deployment across the internet uses) or sasl_plaintext.
    #[arg(long = "kafka-security-protocol", env = "TA_KAFKA_SECURITY_PROTOCOL", value_enum, default_value_t = SecurityProtocol::Plaintext)]
    pub protocol: SecurityProtocol,

    /// PEM file of the certificate authorities trusted to sign the brokers' certificates
    /// (ssl, sasl_ssl). The brokers' certificates must name the host or IP of each address the
    /// client connects to (bootstrap and advertised).
    #[arg(long = "kafka-tls-ca-file", env = "TA_KAFKA_TLS_CA_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty())]
    pub tls_ca_file: Option<PathBuf>,

    /// PEM certificate (chain) this client presents for mutual TLS; with TA_KAFKA_TLS_KEY_FILE.
    #[arg(long = "kafka-tls-cert-file", env = "TA_KAFKA_TLS_CERT_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty())]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of TA_KAFKA_TLS_CERT_FILE.
    #[arg(long = "kafka-tls-key-file", env = "TA_KAFKA_TLS_KEY_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty())]
    pub tls_key_file: Option<PathBuf>,

    /// SASL mechanism (sasl_ssl, sasl_plaintext).
    #[arg(long = "kafka-sasl-mechanism", env = "TA_KAFKA_SASL_MECHANISM", value_enum, default_value_t = SaslMechanism::ScramSha512)]
    pub sasl_mechanism: SaslMechanism,

    /// SASL user name (sasl_ssl, sasl_plaintext).
    #[arg(long = "kafka-sasl-username", env = "TA_KAFKA_SASL_USERNAME", num_args = 0..=1, default_missing_value = "")]
    pub sasl_username: Option<String>,

    /// File holding the SASL password (its first line). A file, not a value, so the password
    /// is not in the process environment.
    #[arg(long = "kafka-sasl-password-file", env = "TA_KAFKA_SASL_PASSWORD_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty())]
    pub sasl_password_file: Option<PathBuf>,
}

/// A path setting where an empty value means unset (clap's own path parser refuses "").
pub(crate) fn path_or_empty() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

/// SASL credentials read from the settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why the Kafka security settings cannot be used; each message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSecurityError {
    #[error(
        "TA_KAFKA_SECURITY_PROTOCOL={0} needs TA_KAFKA_TLS_CA_FILE: the CA certificates (PEM) that signed the brokers' certificates"
    )]
    MissingCaFile(SecurityProtocol),
    #[error(
        "TA_KAFKA_SECURITY_PROTOCOL={0} needs TA_KAFKA_SASL_USERNAME and TA_KAFKA_SASL_PASSWORD_FILE"
    )]
    MissingSasl(SecurityProtocol),
    #[error(
        "{setting} is set but TA_KAFKA_SECURITY_PROTOCOL={protocol} does not use it; set TA_KAFKA_SECURITY_PROTOCOL={wanted}, or remove {setting}"
    )]
    Unused {
        setting: &'static str,
        protocol: SecurityProtocol,
        wanted: &'static str,
    },
    #[error(
        "TA_KAFKA_TLS_CERT_FILE and TA_KAFKA_TLS_KEY_FILE go together (mutual TLS): set both or neither"
    )]
    HalfClientCertificate,
    #[error("cannot read {setting} {path}: {source}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{setting} {path} holds no {what} in PEM form")]
    NoPem {
        setting: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{setting} {path}: {detail}")]
    BadPem {
        setting: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("TA_KAFKA_SASL_PASSWORD_FILE {0} is empty")]
    EmptyPassword(PathBuf),
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl KafkaSecurity {
    /// These settings with empty values as unset: compose passes an unset variable as "".
    fn effective(&self) -> Self {
        let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        Self {
            protocol: self.protocol,
            tls_ca_file: path(&self.tls_ca_file),
            tls_cert_file: path(&self.tls_cert_file),
            tls_key_file: path(&self.tls_key_file),
            sasl_mechanism: self.sasl_mechanism,
            sasl_username: self.sasl_username.clone().filter(|u| !u.is_empty()),
            sasl_password_file: path(&self.sasl_password_file),
        }
    }

    /// Check that the settings fit together, without reading any file.
    pub fn check(&self) -> Result<(), KafkaSecurityError> {
        let this = self.effective();
        this.check_effective()
    }

    fn check_effective(&self) -> Result<(), KafkaSecurityError> {
        let p = self.protocol;
        if p.uses_tls() && self.tls_ca_file.is_none() {
            return Err(KafkaSecurityError::MissingCaFile(p));
        }
        if !p.uses_tls() {
            for (setting, set) in [
                ("TA_KAFKA_TLS_CA_FILE", self.tls_ca_file.is_some()),
                ("TA_KAFKA_TLS_CERT_FILE", self.tls_cert_file.is_some()),
                ("TA_KAFKA_TLS_KEY_FILE", self.tls_key_file.is_some()),
            ] {
                if set {
                    let wanted = if p.uses_sasl() { "sasl_ssl" } else { "ssl" };
                    return Err(KafkaSecurityError::Unused {
                        setting,
                        protocol: p,
                        wanted,
                    });
                }
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(KafkaSecurityError::HalfClientCertificate);
        }
        if p.uses_sasl() {
            if self.sasl_username.as_deref().is_none_or(str::is_empty)
                || self.sasl_password_file.is_none()
            {
                return Err(KafkaSecurityError::MissingSasl(p));
            }
        } else {
            for (setting, set) in [
                ("TA_KAFKA_SASL_USERNAME", self.sasl_username.is_some()),
                (
                    "TA_KAFKA_SASL_PASSWORD_FILE",
                    self.sasl_password_file.is_some(),
                ),
            ] {
                if set {
                    let wanted = if p.uses_tls() {
                        "sasl_ssl"
                    } else {
                        "sasl_plaintext"
                    };
                    return Err(KafkaSecurityError::Unused {
                        setting,
                        protocol: p,
                        wanted,
                    });
                }
            }
        }
        Ok(())
    }

    /// The TLS client configuration (`None` for plaintext protocols): the CA file's roots, and
    /// the client certificate when one is configured. Reads the PEM files.
    pub fn tls_client_config(
        &self,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, KafkaSecurityError> {
        let this = self.effective();
        this.check_effective()?;
        let Some(ca_file) = self
            .tls_ca_file
            .as_deref()
            .filter(|_| this.protocol.uses_tls())
        else {
            return Ok(None);
        };
        let builder = client_config_trusting("TA_KAFKA_TLS_CA_FILE", ca_file)?;
        let config = match (&this.tls_cert_file, &this.tls_key_file) {
            (Some(cert), Some(key)) => builder.with_client_auth_cert(
                read_certs("TA_KAFKA_TLS_CERT_FILE", cert)?,
                read_key(key)?,
            )?,
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(Arc::new(config)))
    }

    /// The SASL credentials (`None` when the protocol uses no SASL). Reads the password file.
    pub fn sasl(&self) -> Result<Option<SaslCredentials>, KafkaSecurityError> {
        let this = self.effective();
        this.check_effective()?;
        if !this.protocol.uses_sasl() {
            return Ok(None);
        }
        let (Some(username), Some(file)) = (&this.sasl_username, &this.sasl_password_file) else {
            return Err(KafkaSecurityError::MissingSasl(this.protocol));
        };
        let text = std::fs::read_to_string(file).map_err(|source| KafkaSecurityError::Read {
            setting: "TA_KAFKA_SASL_PASSWORD_FILE",
            path: file.clone(),
            source,
        })?;
        let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if password.is_empty() {
            return Err(KafkaSecurityError::EmptyPassword(file.clone()));
        }
        Ok(Some(SaslCredentials {
            mechanism: this.sasl_mechanism,
            username: username.clone(),
            password: password.to_owned(),
        }))
    }

    /// One line for the start-up log: what is used, never a secret.
    pub fn describe(&self) -> String {
        let this = self.effective();
        let mut s = this.protocol.to_string();
        if this.protocol.uses_tls() {
            s.push_str(if this.tls_cert_file.is_some() {
                ", TLS with a client certificate"
            } else {
                ", TLS"
            });
        }
        if this.protocol.uses_sasl() {
            s.push_str(&format!(
                ", {} as {}",
                this.sasl_mechanism,
                this.sasl_username.as_deref().unwrap_or("?")
            ));
        }
        s
    }
}

/// A TLS client configuration builder on ring that trusts exactly the CA certificates of the
/// PEM file `ca_file` (the setting named `setting` in errors). Also the registry follower's
/// (`TA_REGISTRY_CA_FILE`).
pub(crate) fn client_config_trusting(
    setting: &'static str,
    ca_file: &Path,
) -> Result<
    rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    KafkaSecurityError,
> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(setting, ca_file)? {
        roots.add(cert).map_err(|e| KafkaSecurityError::BadPem {
            setting,
            path: ca_file.to_path_buf(),
            detail: format!("not a usable CA certificate: {e}"),
        })?;
    }
    // ring, the provider rskafka builds rustls with; named explicitly so that a crate
    // enabling a second provider cannot make the default ambiguous. rustls deprecates it
    // for lacking post-quantum key exchange, which aws-lc-rs (a C/assembly build) would add.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots),
    )
}

fn read_file(setting: &'static str, path: &Path) -> Result<Vec<u8>, KafkaSecurityError> {
    std::fs::read(path).map_err(|source| KafkaSecurityError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, KafkaSecurityError> {
    let pem = read_file(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KafkaSecurityError::BadPem {
            setting,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(KafkaSecurityError::NoPem {
            setting,
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, KafkaSecurityError> {
    const SETTING: &str = "TA_KAFKA_TLS_KEY_FILE";
    let pem = read_file(SETTING, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => KafkaSecurityError::NoPem {
            setting: SETTING,
            path: path.to_path_buf(),
            what: "private key",
        },
        // The key's bytes never go into a message.
        other => KafkaSecurityError::BadPem {
            setting: SETTING,
            path: path.to_path_buf(),
            detail: format!("not a PEM private key ({})", pem_error_kind(&other)),
        },
    })
}

fn pem_error_kind(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a section has no end line",
        E::IllegalSectionStart { .. } => "a section starts badly",
        E::Base64Decode(_) => "bad base64",
        _ => "unreadable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaSecurity,
    }

    fn parse(args: &[&str]) -> KafkaSecurity {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .kafka
    }

    fn err(args: &[&str]) -> String {
        parse(args).check().unwrap_err().to_string()
    }

    #[test]
    fn the_default_is_plaintext_without_tls_or_sasl() {
        let s = parse(&[]);
        assert_eq!(s.protocol, SecurityProtocol::Plaintext);
        assert!(s.tls_client_config().unwrap().is_none());
        assert!(s.sasl().unwrap().is_none());
        assert_eq!(s.describe(), "plaintext");
    }

    #[test]
    fn tls_without_a_ca_file_is_refused_naming_the_setting() {
        for p in ["ssl", "sasl_ssl"] {
            let e = err(&[
                "--kafka-security-protocol",
                p,
                "--kafka-sasl-username",
                "u",
                "--kafka-sasl-password-file",
                "/p",
            ]);
            assert!(e.contains("needs TA_KAFKA_TLS_CA_FILE"), "{e}");
        }
    }

    #[test]
    fn sasl_without_user_or_password_file_is_refused() {
        let e = err(&["--kafka-security-protocol", "sasl_plaintext"]);
        assert!(
            e.contains("TA_KAFKA_SASL_USERNAME and TA_KAFKA_SASL_PASSWORD_FILE"),
            "{e}"
        );
        let e = err(&[
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-username",
            "u",
        ]);
        assert!(e.contains("TA_KAFKA_SASL_PASSWORD_FILE"), "{e}");
    }

    #[test]
    fn a_setting_the_protocol_ignores_is_refused_with_the_protocol_that_uses_it() {
        // A CA file with plaintext would otherwise look like TLS while sending plaintext.
        let e = err(&["--kafka-tls-ca-file", "/ca.pem"]);
        assert!(
            e.contains("TA_KAFKA_TLS_CA_FILE is set") && e.contains("=ssl"),
            "{e}"
        );
        let e = err(&["--kafka-sasl-username", "u"]);
        assert!(
            e.contains("TA_KAFKA_SASL_USERNAME is set") && e.contains("=sasl_plaintext"),
            "{e}"
        );
        let e = err(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-tls-ca-file",
            "/c",
            "--kafka-sasl-username",
            "u",
        ]);
        assert!(e.contains("=sasl_ssl"), "{e}");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let e = err(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-tls-ca-file",
            "/c",
            "--kafka-tls-cert-file",
            "/cert",
        ]);
        assert!(e.contains("set both or neither"), "{e}");
    }

    #[test]
    fn unreadable_or_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let s = parse(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-tls-ca-file",
            missing.to_str().unwrap(),
        ]);
        let e = s.tls_client_config().unwrap_err().to_string();
        assert!(
            e.contains("cannot read TA_KAFKA_TLS_CA_FILE") && e.contains("nope.pem"),
            "{e}"
        );

        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let s = parse(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-tls-ca-file",
            not_pem.to_str().unwrap(),
        ]);
        let e = s.tls_client_config().unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");

        let empty = dir.path().join("password");
        std::fs::write(&empty, "\n").unwrap();
        let s = parse(&[
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-username",
            "edge-eu",
            "--kafka-sasl-password-file",
            empty.to_str().unwrap(),
        ]);
        assert!(s.sasl().unwrap_err().to_string().contains("is empty"));
    }

    #[test]
    fn the_password_is_the_file_s_first_line_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret-passw0rd\r\nignored\n").unwrap();
        let s = parse(&[
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-256",
            "--kafka-sasl-username",
            "edge-eu",
            "--kafka-sasl-password-file",
            file.to_str().unwrap(),
        ]);
        let creds = s.sasl().unwrap().unwrap();
        assert_eq!(creds.password, "s3cret-passw0rd");
        assert_eq!(creds.mechanism, SaslMechanism::ScramSha256);
        assert!(!format!("{creds:?}").contains("s3cret"));
        assert_eq!(s.describe(), "sasl_plaintext, SCRAM-SHA-256 as edge-eu");
    }
}
