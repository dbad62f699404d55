//! TLS in front of a real broker, for the Kafka security tests: certificates made by the test
//! (rcgen) and stunnel (Debian's package, a real TLS server on OpenSSL) terminating TLS before
//! tansu. tansu 0.6 accepts `--cert`/`--key` but never wraps its connections in TLS (its
//! acceptor is built and dropped), so the TLS a client sees here is stunnel's, and the Kafka
//! and SASL behind it are tansu's.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use ta_devsupport::Proc;

/// PEM files of one test's certificate authorities and certificates.
pub struct TestCerts {
    /// The CA that signed the broker's and the client's certificates.
    pub ca: PathBuf,
    /// Another CA, which signed nothing here: trusting only it must fail.
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate signed by the other CA: a broker requiring client
    /// certificates from `ca` refuses it.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate for 127.0.0.1 and `hosts` signed by `issuer`: (cert PEM, key PEM).
fn leaf(
    name: &str,
    hosts: &[&str],
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> (String, String) {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let mut params = CertificateParams::new(hosts).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl TestCerts {
    /// Certificates for a broker on 127.0.0.1 / localhost.
    pub fn generate(dir: &Path) -> Self {
        Self::generate_for(dir, &["localhost"])
    }

    /// Certificates whose broker certificate names `hosts` (and 127.0.0.1).
    pub fn generate_for(dir: &Path, hosts: &[&str]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let (good, other) = (ca("Tiny Analytics test CA"), ca("Some other CA"));
        let (server_cert, server_key) = leaf("broker", hosts, &good);
        let (client_cert, client_key) = leaf("edge-eu", &["localhost"], &good);
        let (stranger_cert, stranger_key) = leaf("stranger", &["localhost"], &other);
        Self {
            ca: write("ca.pem", &good.pem()),
            other_ca: write("other-ca.pem", &other.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            stranger_cert: write("stranger.pem", &stranger_cert),
            stranger_key: write("stranger.key", &stranger_key),
        }
    }
}

/// stunnel accepting TLS on `port` and forwarding plaintext to `upstream`.
pub struct TlsFront {
    pub port: u16,
    _child: Proc,
}

impl TlsFront {
    /// With `require_client_cert`, only clients presenting a certificate signed by the test
    /// CA get through (mutual TLS).
    pub fn start(
        dir: &Path,
        port: u16,
        upstream: u16,
        certs: &TestCerts,
        require_client_cert: bool,
    ) -> Self {
        let stunnel = ["/usr/bin/stunnel4", "/usr/bin/stunnel"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("stunnel is installed (deploy/local/install test-tools installs stunnel4)");
        std::fs::create_dir_all(dir).unwrap();
        let mut conf = format!(
            "foreground = yes\npid =\ndebug = notice\n[kafka]\naccept = 127.0.0.1:{port}\n\
             connect = 127.0.0.1:{upstream}\ncert = {}\nkey = {}\n",
            certs.server_cert.display(),
            certs.server_key.display()
        );
        if require_client_cert {
            conf.push_str(&format!(
                "CAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
                certs.ca.display()
            ));
        }
        let conf_path = dir.join(format!("stunnel-{port}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.join(format!("stunnel-{port}.log"))).unwrap();
        let child = Proc::new(
            Command::new(stunnel)
                .arg(&conf_path)
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("starting stunnel"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            _child: child,
        }
    }
}
