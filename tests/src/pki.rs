//! Certificates made by tests (rcgen): CAs, the certificates they sign,
//! and TLS acceptors for https receivers.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::sync::Arc;
use tokio_rustls::rustls;

/// A certificate with its key.
pub struct Issued {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn private_key(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        rustls::pki_types::PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }
}

/// A self-signed CA.
pub struct Ca(Issued);

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca(Issued { cert, key })
    }

    pub fn pem(&self) -> String {
        self.0.cert_pem()
    }

    /// A certificate for `sans` (host names, IP addresses; none for a
    /// client's), with `cn` as its common name.
    pub fn issue(&self, sans: &[&str], cn: &str) -> Issued {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.0.cert, &self.0.key).expect("signed");
        Issued { cert, key }
    }
}

/// TLS for an https receiver presenting `server`; with `clients`, it
/// accepts only client certificates that CA signed.
pub fn acceptor(server: &Issued, clients: Option<&Ca>) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.0.cert.der().clone()).expect("client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(vec![server.cert.der().clone()], server.private_key())
        .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
