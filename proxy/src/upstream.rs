//! The workspace's one builder of outgoing HTTP clients: the proxy's upstream client, the eval
//! runner's API client and dataset downloads, and the load generators all come from
//! [`http_client`], each with the [`ClientOptions`] it needs.
//!
//! Every client speaks HTTP/1.1 to `http://` URLs and HTTP/1.1 or HTTP/2 (chosen by ALPN) to
//! `https://` ones, over rustls with the ring provider, trusting the webpki roots plus an optional
//! extra CA; TCP_NODELAY is on and connections are pooled per host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The extra CA file cannot be read or holds no usable certificate (the operator's input).
    #[error("CA certificate {}: {why}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the TLS configuration (internal).
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// A pooled HTTP/1.1 + HTTP/2 client over rustls whose requests have body type `B`.
pub type HttpClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// How a client connects and pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// A CA certificate file (PEM) trusted besides the webpki roots (a private upstream, the twin's
    /// generated CA). Default: none.
    pub extra_ca: Option<PathBuf>,
    /// Connecting (TCP) may take this long. Default: 10 s.
    pub connect_timeout: Duration,
    /// TCP keep-alive probes on idle connections after this long. Default: none.
    pub tcp_keepalive: Option<Duration>,
    /// A pooled connection idle this long is closed. Default: 90 s.
    pub pool_idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            extra_ca: None,
            connect_timeout: Duration::from_secs(10),
            tcp_keepalive: None,
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Adds every certificate of a PEM file to `roots`; a file without one is an error.
fn load_ca(path: &Path, roots: &mut rustls::RootCertStore) -> Result<(), ClientError> {
    let bad = |e: &dyn std::fmt::Display| ClientError::Ca {
        path: path.to_owned(),
        why: e.to_string(),
    };
    let pem = std::fs::read(path).map_err(|e| bad(&e))?;
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        n += 1;
    }
    if n == 0 {
        return Err(bad(&"no PEM certificate in it"));
    }
    Ok(())
}

/// Builds a client with `opts`. Fails only on the extra CA (unreadable, or holding no certificate).
pub fn http_client<B>(opts: &ClientOptions) -> Result<HttpClient<B>, ClientError>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &opts.extra_ca {
        load_ca(ca, &mut roots)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.set_keepalive(opts.tcp_keepalive);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(opts.pool_idle_timeout)
        .build(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Body = http_body_util::Full<bytes::Bytes>;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for ca in [empty, dir.path().join("missing.pem")] {
            let opts = ClientOptions {
                extra_ca: Some(ca.clone()),
                ..ClientOptions::default()
            };
            let e = http_client::<Body>(&opts).unwrap_err().to_string();
            assert!(e.contains(&ca.display().to_string()), "{e}");
        }
        assert!(http_client::<Body>(&ClientOptions::default()).is_ok());
    }
}
