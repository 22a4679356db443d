//! Signed delivery URLs: `sig` = hex HMAC-SHA256(key, pathname + "?" + query without `sig`),
//! valid until `exp` (unix seconds). Pure functions; the clock is passed in.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this image requires a signed URL (exp and sig query parameters)")]
    Missing,
    #[error("the signed URL has expired")]
    Expired,
    #[error("the URL signature does not match")]
    Mismatch,
}

pub fn sign(key: &[u8], path: &str, query_without_sig: &str) -> String {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    mac.update(path.as_bytes());
    mac.update(b"?");
    mac.update(query_without_sig.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks `query` (raw, as received) of a request for `path` against any of `keys`.
pub fn verify(
    keys: &[Vec<u8>],
    path: &str,
    query: &str,
    now_secs: i64,
) -> Result<(), SignatureError> {
    let mut sig = None;
    let mut exp = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sig", value)) => sig = Some(value),
            Some(("exp", value)) => {
                exp = Some(value);
                rest.push(pair);
            }
            _ => rest.push(pair),
        }
    }
    let (Some(sig), Some(exp)) = (sig, exp) else {
        return Err(SignatureError::Missing);
    };
    let exp: i64 = exp.parse().map_err(|_| SignatureError::Mismatch)?;
    let Ok(given) = hex::decode(sig) else {
        return Err(SignatureError::Mismatch);
    };
    let signed = rest.join("&");
    let matches = keys.iter().any(|key| {
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
            return false;
        };
        mac.update(path.as_bytes());
        mac.update(b"?");
        mac.update(signed.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&given).is_ok()
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    if exp <= now_secs {
        return Err(SignatureError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_verify_until_they_expire() {
        let key = b"secret".to_vec();
        let path = "/images/delivery/h/img/public";
        let sig = sign(&key, path, "exp=1000");
        let query = format!("exp=1000&sig={sig}");
        assert_eq!(
            verify(std::slice::from_ref(&key), path, &query, 999),
            Ok(())
        );
        assert_eq!(
            verify(std::slice::from_ref(&key), path, &query, 1000),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(&[b"other".to_vec(), key.clone()], path, &query, 10),
            Ok(())
        );
        assert_eq!(
            verify(&[b"other".to_vec()], path, &query, 10),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&key),
                "/images/delivery/h/img/thumb",
                &query,
                10
            ),
            Err(SignatureError::Mismatch)
        );
        let tampered = format!("exp=2000&sig={sig}");
        assert_eq!(
            verify(std::slice::from_ref(&key), path, &tampered, 10),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(std::slice::from_ref(&key), path, "exp=1000", 10),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&[key], path, "exp=1000&sig=zz", 10),
            Err(SignatureError::Mismatch)
        );
    }
}
