//! The HTTPS endpoint's certificate: the operator's (`--tls-cert`, `--tls-key`), or a self-signed one
//! made on first start beside the database and reused afterwards, so that clients can pin it
//! (`mmo-client --ca-cert`). rustls with the ring provider.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, DbLocation};

/// Why the certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot create a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A loaded certificate and the TLS configuration built from it.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// The certificate chain's file (what a client may trust).
    pub cert_path: PathBuf,
    /// SHA-256 of the leaf certificate, as `AB:CD:…`.
    pub fingerprint: String,
    /// Whether the certificate was made on this start.
    pub created: bool,
}

/// Where the self-signed certificate and its key live: beside the SQLite database, named after it
/// (`mmo.sqlite3` → `mmo-cert.pem`, `mmo-key.pem`); with PostgreSQL, `mmo-cert.pem` and `mmo-key.pem` in
/// the working directory.
pub fn self_signed_paths(db: &DbLocation) -> (PathBuf, PathBuf) {
    let db = match db {
        DbLocation::Sqlite(path) => path.as_path(),
        DbLocation::Postgres(_) => Path::new("mmo"),
    };
    let stem = db
        .file_stem()
        .map_or_else(|| "mmo".into(), |s| s.to_string_lossy().into_owned());
    (
        db.with_file_name(format!("{stem}-cert.pem")),
        db.with_file_name(format!("{stem}-key.pem")),
    )
}

/// Loads the configured certificate, or the self-signed one beside the database (creating it if
/// missing, valid for `localhost`, loopback, and the HTTPS and public addresses' IPs).
pub fn load_or_create(config: &Config, http_addr: SocketAddr) -> Result<Tls, TlsError> {
    let (cert_path, key_path, created) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        _ => {
            let (cert, key) = self_signed_paths(&config.db);
            let created = !(cert.is_file() && key.is_file());
            if created {
                let mut ips = vec![http_addr.ip()];
                ips.extend(config.public_addr.map(|addr| addr.ip()));
                create_self_signed(&cert, &key, &ips)?;
            }
            (cert, key, created)
        }
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read {
            path: cert_path.clone(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate { path: cert_path });
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|source| TlsError::Read {
        path: key_path.clone(),
        source,
    })?;
    let mut tls =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(tls),
        cert_path,
        fingerprint,
        created,
    })
}

/// Makes a self-signed certificate for `localhost`, loopback and `ips`; the key file is readable by
/// its owner only.
pub fn create_self_signed(
    cert_path: &Path,
    key_path: &Path,
    ips: &[IpAddr],
) -> Result<(), TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for ip in ips.iter().filter(|ip| !ip.is_unspecified()) {
        let ip = ip.to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
    }
    let made = rcgen::generate_simple_self_signed(names)?;
    write_file(key_path, made.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, made.cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

/// SHA-256 of a certificate, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().join("game.db"));
        let http: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = load_or_create(&config, http).unwrap();
        assert!(first.created);
        assert_eq!(first.cert_path, dir.path().join("game-cert.pem"));
        let again = load_or_create(&config, http).unwrap();
        assert!(!again.created);
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join("game-key.pem");
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is its owner's only");
        }
    }
}
