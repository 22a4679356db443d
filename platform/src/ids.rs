//! Identifiers the platform issues. Storage keys and URLs are built only from these, never from
//! client strings, so they are validated by construction.

use rand::RngCore;

/// 32 lowercase hex characters (the shape of Cloudflare account ids and Stream uids).
pub fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A random UUID v4 in hyphenated form (the shape of Cloudflare Images ids).
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `n` random bytes as URL-safe base64 without padding; for secrets and one-time tokens.
pub fn new_secret(n: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// True for ids a client may choose (custom image ids, names used in paths): 1–1024 characters of
/// `[A-Za-z0-9._~-]` plus `/` inside, never `.` or `..` segments, never a leading `/`.
pub fn is_safe_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('/')
        && !id.ends_with('/')
        && id
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_expected_shapes() {
        assert_eq!(new_uid().len(), 32);
        assert_ne!(new_uid(), new_uid());
        assert_eq!(new_uuid().len(), 36);
        assert_eq!(new_secret(32).len(), 43);
    }

    #[test]
    fn client_ids_are_checked() {
        assert!(is_safe_client_id("photos/cat-1.jpg"));
        assert!(!is_safe_client_id("../etc/passwd"));
        assert!(!is_safe_client_id("a//b"));
        assert!(!is_safe_client_id("/abs"));
        assert!(!is_safe_client_id("a b"));
        assert!(!is_safe_client_id(""));
    }
}
