//! Zero-copy STUN message parsing.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{
    attr, padded, split_message_type, Class, TransactionId, FINGERPRINT_XOR, HEADER_LEN,
    MAGIC_COOKIE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("the two most significant bits are not zero")]
    NotStun,
    #[error("wrong magic cookie")]
    BadCookie,
    #[error("length is not a multiple of four or does not match the datagram")]
    BadLength,
    #[error("an attribute runs past the end of the message")]
    TruncatedAttribute,
    #[error("FINGERPRINT is not the last attribute or does not match")]
    BadFingerprint,
    #[error("an attribute other than FINGERPRINT follows MESSAGE-INTEGRITY")]
    AttributeAfterIntegrity,
}

/// A validated STUN message borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    pub class: Class,
    pub method: u16,
    /// Offset of the MESSAGE-INTEGRITY attribute header, if present.
    integrity_at: Option<usize>,
    pub has_fingerprint: bool,
}

impl<'a> Message<'a> {
    /// Validates framing: header, cookie, the length field against `bytes` (which must be exactly
    /// one message), every attribute boundary, FINGERPRINT (checked when present) and that nothing
    /// but FINGERPRINT follows MESSAGE-INTEGRITY.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        let ty = u16::from_be_bytes([bytes[0], bytes[1]]);
        if ty & 0xC000 != 0 {
            return Err(ParseError::NotStun);
        }
        let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) != MAGIC_COOKIE {
            return Err(ParseError::BadCookie);
        }
        if length % 4 != 0 || HEADER_LEN + length != bytes.len() {
            return Err(ParseError::BadLength);
        }
        let (class, method) = split_message_type(ty);
        let mut integrity_at = None;
        let mut has_fingerprint = false;
        let mut offset = HEADER_LEN;
        while offset < bytes.len() {
            if has_fingerprint {
                return Err(ParseError::BadFingerprint);
            }
            if offset + 4 > bytes.len() {
                return Err(ParseError::TruncatedAttribute);
            }
            let attr_type = u16::from_be_bytes([bytes[offset], bytes[offset + 1]]);
            let attr_len = usize::from(u16::from_be_bytes([bytes[offset + 2], bytes[offset + 3]]));
            let end = offset + 4 + padded(attr_len);
            if end > bytes.len() {
                return Err(ParseError::TruncatedAttribute);
            }
            match attr_type {
                attr::FINGERPRINT => {
                    if attr_len != 4 {
                        return Err(ParseError::BadFingerprint);
                    }
                    let expected = u32::from_be_bytes([
                        bytes[offset + 4],
                        bytes[offset + 5],
                        bytes[offset + 6],
                        bytes[offset + 7],
                    ]);
                    if fingerprint(&bytes[..offset], offset + 8) != expected {
                        return Err(ParseError::BadFingerprint);
                    }
                    has_fingerprint = true;
                }
                attr::MESSAGE_INTEGRITY if integrity_at.is_none() => integrity_at = Some(offset),
                // RFC 8489 §14.5: MESSAGE-INTEGRITY-SHA256 may follow MESSAGE-INTEGRITY.
                attr::MESSAGE_INTEGRITY_SHA256 => {}
                _ if integrity_at.is_some() => return Err(ParseError::AttributeAfterIntegrity),
                _ => {}
            }
            offset = end;
        }
        Ok(Message {
            bytes,
            class,
            method,
            integrity_at,
            has_fingerprint,
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.bytes[8..20]);
        id
    }

    /// Attributes before MESSAGE-INTEGRITY (the ones RFC 8489 says a receiver must honour).
    pub fn attributes(&self) -> Attributes<'a> {
        let end = self
            .integrity_at
            .unwrap_or_else(|| self.fingerprint_at().unwrap_or(self.bytes.len()));
        Attributes {
            bytes: &self.bytes[..end],
            offset: HEADER_LEN,
        }
    }

    /// The value of the first attribute of `ty` before MESSAGE-INTEGRITY.
    pub fn get(&self, ty: u16) -> Option<&'a [u8]> {
        self.attributes().find(|(t, _)| *t == ty).map(|(_, v)| v)
    }

    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    fn fingerprint_at(&self) -> Option<usize> {
        self.has_fingerprint.then(|| self.bytes.len() - 8)
    }

    /// Checks MESSAGE-INTEGRITY (HMAC-SHA1) with `key`: computed over the message up to the
    /// attribute, with the header length rewritten to end just after it (RFC 8489 §14.5).
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        let value = &self.bytes[at + 4..];
        let attr_len = usize::from(u16::from_be_bytes([self.bytes[at + 2], self.bytes[at + 3]]));
        if attr_len != 20 || value.len() < 20 {
            return false;
        }
        let expected = integrity(&self.bytes[..at], at + 24, key);
        // Compare without an early exit so timing does not reveal how many bytes matched.
        expected
            .iter()
            .zip(&value[..20])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// HMAC-SHA1 over `prefix` (header + attributes before MESSAGE-INTEGRITY) with the header length
/// replaced so the message appears to end at `total_len`.
pub(crate) fn integrity(prefix: &[u8], total_len: usize, key: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    let length = (total_len - HEADER_LEN) as u16;
    mac.update(&prefix[..2]);
    mac.update(&length.to_be_bytes());
    mac.update(&prefix[4..]);
    mac.finalize().into_bytes().into()
}

/// CRC-32 of `prefix` with the header length adjusted to `total_len`, XORed per RFC 8489 §14.7.
pub(crate) fn fingerprint(prefix: &[u8], total_len: usize) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let length = (total_len - HEADER_LEN) as u16;
    hasher.update(&prefix[..2]);
    hasher.update(&length.to_be_bytes());
    hasher.update(&prefix[4..]);
    hasher.finalize() ^ FINGERPRINT_XOR
}

/// Iterator over `(type, value)` of attributes in an already validated message.
pub struct Attributes<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset + 4 > self.bytes.len() {
            return None;
        }
        let b = self.bytes;
        let ty = u16::from_be_bytes([b[self.offset], b[self.offset + 1]]);
        let len = usize::from(u16::from_be_bytes([b[self.offset + 2], b[self.offset + 3]]));
        let start = self.offset + 4;
        let value = b.get(start..start + len)?;
        self.offset = start + padded(len);
        Some((ty, value))
    }
}
