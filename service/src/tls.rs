//! Certificates for the TLS listeners (the edge's HTTPS and HTTP/3, the origin's RTMPS): PEM
//! files from the configuration, or a self-signed development certificate. Every rustls configuration names its crypto
//! provider (ring) explicitly: quinn and other dependencies can pull in more than one, and
//! rustls refuses to guess.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain and its key.
pub struct Material {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// Reads PEM files; `field` names the configuration section in errors (`edge.tls`).
pub fn load(field: &str, cert_file: &Path, key_file: &Path) -> Result<Material, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let cert_pem = read(cert_file)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field}.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{field}.cert_file {}: no certificate in it",
            cert_file.display()
        ));
    }
    let key_pem = read(key_file)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{field}.key_file {}: {e}", key_file.display()))?
        .ok_or_else(|| {
            format!(
                "{field}.key_file {}: no private key in it",
                key_file.display()
            )
        })?;
    Ok(Material { certs, key })
}

/// A self-signed certificate for `hosts`; returns it with its PEM text.
pub fn self_signed(hosts: Vec<String>) -> Result<(Material, String), String> {
    let cert = rcgen::generate_simple_self_signed(hosts)
        .map_err(|e| format!("self-signed certificate: {e}"))?;
    let pem = cert.cert.pem();
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(|e| format!("self-signed key: {e}"))?;
    Ok((
        Material {
            certs: vec![cert.cert.der().clone()],
            key,
        },
        pem,
    ))
}

/// The certificate a listener uses: the PEM files `section` (`edge.tls`, `origin.tls`) names,
/// else a self-signed development certificate when `self_signed` is on (its PEM written to
/// `dev_pem` for clients to trust, and said in the log), else none.
pub fn material(
    section: &str,
    cfg: &potok_config::TlsConfig,
    hosts: Vec<String>,
    dev_pem: &Path,
) -> Result<Option<Material>, String> {
    match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => load(section, cert, key).map(Some),
        _ if cfg.self_signed => {
            let (m, pem) = self_signed(hosts)?;
            std::fs::write(dev_pem, pem).map_err(|e| format!("{}: {e}", dev_pem.display()))?;
            tracing::warn!(cert = %dev_pem.display(), "no {section} certificate configured: using a self-signed development certificate");
            Ok(Some(m))
        }
        _ => Ok(None),
    }
}

/// A rustls server configuration offering `alpn`.
pub fn server_config(m: &Material, alpn: &[&[u8]]) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(m.certs.clone(), m.key.clone_key())
        .map_err(|e| format!("TLS certificate: {e}"))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_load_and_garbage_is_refused_with_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let m = load("edge.tls", &cert, &key).unwrap();
        server_config(&m, &[b"h2"]).unwrap();

        // A missing key file, and a key file without a key, name the section they belong to.
        let err = load("origin.tls", &cert, &dir.path().join("missing.pem"))
            .err()
            .unwrap();
        assert!(err.contains("missing.pem"), "{err}");
        let err = load("origin.tls", &cert, &cert).err().unwrap();
        assert!(err.starts_with("origin.tls.key_file"), "{err}");
        std::fs::write(&cert, "not a certificate").unwrap();
        let err = load("origin.tls", &cert, &key).err().unwrap();
        assert!(err.starts_with("origin.tls.cert_file"), "{err}");
    }

    #[test]
    fn self_signed_material_is_written_for_clients() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("dev.pem");
        let cfg = potok_config::TlsConfig {
            cert_file: None,
            key_file: None,
            self_signed: true,
        };
        assert!(
            material("edge.tls", &cfg, vec!["localhost".into()], &pem)
                .unwrap()
                .is_some()
        );
        assert!(
            std::fs::read_to_string(&pem)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let off = potok_config::TlsConfig {
            self_signed: false,
            ..cfg
        };
        assert!(material("edge.tls", &off, vec![], &pem).unwrap().is_none());
    }
}
