//! TLS for TURN over TLS (port 5349): a configured certificate, or a self-signed one generated at
//! start so `turns:` works out of the box (clients must then skip verification or pin it).

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the acceptor from PEM files, or from a fresh self-signed certificate for `names`.
pub fn server_config(
    cert_path: Option<&Path>,
    key_path: Option<&Path>,
    names: &[String],
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let (chain, key) = match (cert_path, key_path) {
        (Some(cert), Some(key)) => (read_chain(cert)?, read_key(key)?),
        _ => self_signed(names)?,
    };
    // The ring provider is named explicitly: the process may have several rustls providers
    // compiled in, and then the implicit default panics.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsSetupError::Pem {
            path: path.display().to_string(),
            message: "no certificate found".into(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.display().to_string(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsSetupError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn self_signed(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).map_err(|e| {
        TlsSetupError::Pem {
            path: "generated key".into(),
            message: e.to_string(),
        }
    })?;
    Ok((vec![certified.cert.der().clone()], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_and_file_configs_build() {
        let names = vec!["localhost".to_string()];
        server_config(None, None, &names).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(names.clone()).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        server_config(Some(&cert), Some(&key), &names).unwrap();
        std::fs::write(&key, "not a key").unwrap();
        assert!(server_config(Some(&cert), Some(&key), &names).is_err());
    }
}
