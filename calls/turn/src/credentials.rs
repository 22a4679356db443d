//! Ephemeral TURN credentials (the coturn `use-auth-secret` scheme Cloudflare also follows).
//!
//! A username is `<expiry unix seconds>[:<id>]`; its password ("credential") is
//! `base64(HMAC-SHA1(key secret, username))`. Whoever holds a key's secret can mint credentials
//! without asking the server; the server only needs the secrets and the revoked usernames.
//! Usernames minted by the API use `<expiry>:<key_id>.<random>` so the key is found directly;
//! other ids are checked against every active key.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// The password of an ephemeral username under a key's secret.
pub fn credential_for(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The long-term key of RFC 8489 §9.2.2: MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    md5.finalize().into()
}

/// Splits `expiry[:id]`; `None` when the expiry is not a number.
pub fn parse_username(username: &str) -> Option<(u64, Option<&str>)> {
    let (expiry, id) = match username.split_once(':') {
        Some((expiry, id)) => (expiry, Some(id)),
        None => (username, None),
    };
    let expiry = expiry.parse::<u64>().ok()?;
    Some((expiry, id))
}

/// Who a verified username belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub key_id: Arc<str>,
    pub account_id: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReject {
    /// Not `expiry[:id]`.
    Malformed,
    Expired,
    Revoked,
    /// No active key produces a password that verifies the message.
    NoMatchingKey,
}

/// What the sans-IO core asks about credentials.
pub trait CredentialSource {
    /// Finds the key whose password for `username` makes `verifies(password)` true.
    fn resolve(
        &self,
        username: &str,
        now_unix: u64,
        verifies: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Owner, AuthReject>;

    /// False once the username was revoked or its key deleted; checked for live allocations.
    fn still_valid(&self, username: &str, owner: &Owner) -> bool;
}

#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub secret: String,
    pub owner: Owner,
}

/// The active TURN keys and revoked usernames, loaded from the database and updated by the API.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    keys: HashMap<String, KeyEntry>,
    /// `(key id, username)`: a key holder can only revoke what its own key signs.
    revoked: HashSet<(String, String)>,
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert_key(&mut self, key_id: &str, account_id: &str, secret: &str) {
        let owner = Owner {
            key_id: key_id.into(),
            account_id: account_id.into(),
        };
        self.keys.insert(
            key_id.to_string(),
            KeyEntry {
                secret: secret.to_string(),
                owner,
            },
        );
    }

    pub fn remove_key(&mut self, key_id: &str) {
        self.keys.remove(key_id);
    }

    pub fn revoke(&mut self, key_id: &str, username: &str) {
        self.revoked
            .insert((key_id.to_string(), username.to_string()));
    }

    fn is_revoked(&self, key_id: &str, username: &str) -> bool {
        // Avoids allocating a tuple of Strings on the lookup path for the common empty case.
        !self.revoked.is_empty()
            && self
                .revoked
                .contains(&(key_id.to_string(), username.to_string()))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl CredentialSource for KeyRing {
    fn resolve(
        &self,
        username: &str,
        now_unix: u64,
        verifies: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Owner, AuthReject> {
        let (expiry, id) = parse_username(username).ok_or(AuthReject::Malformed)?;
        if expiry < now_unix {
            return Err(AuthReject::Expired);
        }
        let hinted = id
            .map(|id| id.split('.').next().unwrap_or(id))
            .and_then(|key_id| self.keys.get(key_id));
        let found = match hinted {
            Some(entry) if verifies(&credential_for(&entry.secret, username)) => Some(entry),
            _ => self
                .keys
                .values()
                .find(|entry| verifies(&credential_for(&entry.secret, username))),
        };
        let entry = found.ok_or(AuthReject::NoMatchingKey)?;
        if self.is_revoked(&entry.owner.key_id, username) {
            return Err(AuthReject::Revoked);
        }
        Ok(entry.owner.clone())
    }

    fn still_valid(&self, username: &str, owner: &Owner) -> bool {
        !self.is_revoked(&owner.key_id, username) && self.keys.contains_key(&*owner.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_the_coturn_scheme() {
        // Computed independently: printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        assert_eq!(
            credential_for("secret", "1700000000:alice"),
            "d8soP47RbdIKLDUOpnJPVQyq5Ts="
        );
    }

    #[test]
    fn usernames_parse() {
        assert_eq!(
            parse_username("1700000000:abc.def"),
            Some((1_700_000_000, Some("abc.def")))
        );
        assert_eq!(parse_username("1700000000"), Some((1_700_000_000, None)));
        assert_eq!(parse_username("alice"), None);
        assert_eq!(parse_username(":x"), None);
    }

    #[test]
    fn resolves_by_hint_or_scan_and_rejects_bad_ones() {
        let mut ring = KeyRing::new();
        ring.insert_key("k1", "acct1", "s1");
        ring.insert_key("k2", "acct2", "s2");
        let user = "2000:k2.xyz";
        let password = credential_for("s2", user);
        let owner = ring.resolve(user, 1000, &mut |p| p == password).unwrap();
        assert_eq!(&*owner.account_id, "acct2");
        let other = "2000:someone";
        let password = credential_for("s1", other);
        assert_eq!(
            &*ring
                .resolve(other, 1000, &mut |p| p == password)
                .unwrap()
                .key_id,
            "k1"
        );
        assert_eq!(
            ring.resolve(user, 2001, &mut |_| true),
            Err(AuthReject::Expired)
        );
        assert_eq!(
            ring.resolve("bob", 0, &mut |_| true),
            Err(AuthReject::Malformed)
        );
        assert_eq!(
            ring.resolve(user, 1000, &mut |_| false),
            Err(AuthReject::NoMatchingKey)
        );
        ring.revoke("k1", user);
        assert_eq!(
            ring.resolve(user, 1000, &mut |p| p == credential_for("s2", user))
                .map(|o| o.key_id),
            Ok("k2".into()),
            "another key's revocation does not apply"
        );
        ring.revoke("k2", user);
        assert_eq!(
            ring.resolve(user, 1000, &mut |p| p == credential_for("s2", user)),
            Err(AuthReject::Revoked)
        );
        assert!(!ring.still_valid(user, &owner));
        ring.remove_key("k1");
        assert!(!ring.still_valid(
            "2000:x",
            &Owner {
                key_id: "k1".into(),
                account_id: "acct1".into()
            }
        ));
    }
}
