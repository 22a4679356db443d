//! Stateless nonces: `<expiry unix seconds, 8 hex>` + `<HMAC-SHA1 of expiry and client IP, 16 hex>`.
//!
//! The server keeps no table of issued nonces, so unauthenticated traffic costs no memory; a nonce
//! is valid until its expiry for the client IP it was issued to, and then answered with 438.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub struct NonceIssuer {
    secret: [u8; 32],
    lifetime_secs: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    Stale,
    Invalid,
}

impl NonceIssuer {
    pub fn new(secret: [u8; 32], lifetime_secs: u64) -> Self {
        Self {
            secret,
            lifetime_secs: lifetime_secs.max(1),
        }
    }

    fn tag(&self, expiry: u32, ip: IpAddr) -> String {
        let mut mac =
            <Hmac<Sha1> as Mac>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(&expiry.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    pub fn issue(&self, ip: IpAddr, now_unix: u64) -> String {
        let expiry = (now_unix + self.lifetime_secs).min(u64::from(u32::MAX)) as u32;
        format!("{expiry:08x}{}", self.tag(expiry, ip))
    }

    pub fn check(&self, nonce: &[u8], ip: IpAddr, now_unix: u64) -> NonceCheck {
        let Ok(text) = std::str::from_utf8(nonce) else {
            return NonceCheck::Invalid;
        };
        if text.len() != 24 || !text.is_char_boundary(8) {
            return NonceCheck::Invalid;
        }
        let Ok(expiry) = u32::from_str_radix(&text[..8], 16) else {
            return NonceCheck::Invalid;
        };
        if self.tag(expiry, ip) != text[8..] {
            return NonceCheck::Invalid;
        }
        if u64::from(expiry) < now_unix {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_expire_and_bind_to_the_client_ip() {
        let issuer = NonceIssuer::new([9; 32], 60);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = issuer.issue(ip, 1000);
        assert_eq!(issuer.check(nonce.as_bytes(), ip, 1000), NonceCheck::Valid);
        assert_eq!(issuer.check(nonce.as_bytes(), ip, 1061), NonceCheck::Stale);
        assert_eq!(
            issuer.check(nonce.as_bytes(), "192.0.2.2".parse().unwrap(), 1000),
            NonceCheck::Invalid
        );
        assert_eq!(issuer.check(b"garbage", ip, 1000), NonceCheck::Invalid);
        assert_eq!(
            issuer.check("é".repeat(12).as_bytes(), ip, 1000),
            NonceCheck::Invalid
        );
    }
}
