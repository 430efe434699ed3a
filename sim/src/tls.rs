//! TLS for the twin: a throw-away CA and a `localhost` / `127.0.0.1` certificate it signs, generated at start.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::SimError;

/// A ready TLS acceptor and the PEM of the CA that clients must trust.
#[derive(Clone)]
pub struct TwinTls {
    /// Accepts TLS with ALPN `h2` and `http/1.1`.
    pub acceptor: TlsAcceptor,
    /// The generated CA certificate, PEM.
    pub ca_pem: String,
}

impl std::fmt::Debug for TwinTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinTls").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> SimError {
    SimError::Config(format!("TLS set-up: {e}"))
}

/// Generates the CA and the server certificate, and builds the acceptor.
pub fn generate() -> Result<TwinTls, SimError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "agentcap twin CA (simulated upstream)");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(err)?
    .with_no_client_auth()
    .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)
    .map_err(err)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TwinTls {
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
        ca_pem: ca_cert.pem(),
    })
}
