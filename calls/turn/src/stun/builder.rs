//! Building STUN messages into one buffer.

use std::net::SocketAddr;

use super::{
    address::{encode_plain_address, encode_xor_address},
    attr,
    message::fingerprint,
    message::integrity,
    message_type, padded, Class, TransactionId, HEADER_LEN, MAGIC_COOKIE,
};

pub struct MessageBuilder {
    buf: Vec<u8>,
    transaction_id: TransactionId,
}

impl MessageBuilder {
    pub fn new(class: Class, method: u16, transaction_id: TransactionId) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(class, method).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&transaction_id);
        Self {
            buf,
            transaction_id,
        }
    }

    /// Reserves room for a payload of `extra` bytes (DATA attributes) to avoid regrowth.
    pub fn with_capacity(
        class: Class,
        method: u16,
        transaction_id: TransactionId,
        extra: usize,
    ) -> Self {
        let mut builder = Self::new(class, method, transaction_id);
        builder.buf.reserve(extra + 64);
        builder
    }

    fn start_attribute(&mut self, ty: u16) -> usize {
        self.buf.extend_from_slice(&ty.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.len()
    }

    fn end_attribute(&mut self, value_start: usize) {
        let len = self.buf.len() - value_start;
        debug_assert!(len <= usize::from(u16::MAX));
        self.buf[value_start - 2..value_start].copy_from_slice(&(len as u16).to_be_bytes());
        self.buf.resize(value_start + padded(len), 0);
        self.update_length();
    }

    fn update_length(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn bytes(mut self, ty: u16, value: &[u8]) -> Self {
        let start = self.start_attribute(ty);
        self.buf.extend_from_slice(value);
        self.end_attribute(start);
        self
    }

    pub fn u32(self, ty: u16, value: u32) -> Self {
        self.bytes(ty, &value.to_be_bytes())
    }

    pub fn xor_address(mut self, ty: u16, addr: SocketAddr) -> Self {
        let start = self.start_attribute(ty);
        let tid = self.transaction_id;
        encode_xor_address(&mut self.buf, addr, &tid);
        self.end_attribute(start);
        self
    }

    pub fn mapped_address(mut self, addr: SocketAddr) -> Self {
        let start = self.start_attribute(attr::MAPPED_ADDRESS);
        encode_plain_address(&mut self.buf, addr);
        self.end_attribute(start);
        self
    }

    /// ERROR-CODE: class (hundreds) and number, then a UTF-8 reason phrase.
    pub fn error_code(mut self, code: u16, reason: &str) -> Self {
        let start = self.start_attribute(attr::ERROR_CODE);
        self.buf
            .extend_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        self.buf.extend_from_slice(reason.as_bytes());
        self.end_attribute(start);
        self
    }

    pub fn unknown_attributes(mut self, types: &[u16]) -> Self {
        let start = self.start_attribute(attr::UNKNOWN_ATTRIBUTES);
        for ty in types {
            self.buf.extend_from_slice(&ty.to_be_bytes());
        }
        self.end_attribute(start);
        self
    }

    /// Appends MESSAGE-INTEGRITY keyed with the long-term key.
    pub fn integrity(mut self, key: &[u8]) -> Self {
        let at = self.buf.len();
        let mac = integrity(&self.buf[..at], at + 24, key);
        self = self.bytes(attr::MESSAGE_INTEGRITY, &mac);
        self
    }

    /// Appends FINGERPRINT and returns the finished message.
    pub fn fingerprint(mut self) -> Vec<u8> {
        let at = self.buf.len();
        let crc = fingerprint(&self.buf[..at], at + 8);
        self = self.u32(attr::FINGERPRINT, crc);
        self.buf
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::super::{method, Message};
    use super::*;

    /// RFC 5769 §2.1 sample request, with the password "VOkJxbRl1RmTxUk/WvJxBt" (short-term).
    const RFC5769_REQUEST: &str = "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae \
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74 \
        00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36 \
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20 \
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2 \
        80 28 00 04 e5 7a 3b cf";

    #[test]
    fn verifies_the_rfc5769_sample() {
        let bytes = hex::decode(RFC5769_REQUEST.replace(' ', "")).unwrap();
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.method, method::BINDING);
        assert!(message.has_fingerprint);
        assert!(message.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!message.verify_integrity(b"wrong"));
        assert_eq!(message.get(attr::USERNAME), Some(&b"evtj:h6vY"[..]));
    }

    #[test]
    fn built_messages_parse_and_verify() {
        let tid = [1u8; 12];
        let bytes = MessageBuilder::new(Class::Success, method::ALLOCATE, tid)
            .xor_address(attr::XOR_RELAYED_ADDRESS, "10.0.0.1:50000".parse().unwrap())
            .u32(attr::LIFETIME, 600)
            .bytes(attr::SOFTWARE, b"odd")
            .integrity(b"key")
            .fingerprint();
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.class, Class::Success);
        assert!(message.verify_integrity(b"key"));
        assert_eq!(message.get(attr::LIFETIME), Some(&600u32.to_be_bytes()[..]));
        assert_eq!(message.get(attr::SOFTWARE), Some(&b"odd"[..]));
        let mut tampered = bytes.clone();
        tampered[30] ^= 1;
        assert!(
            Message::parse(&tampered).is_err(),
            "fingerprint catches a flipped bit"
        );
    }

    #[test]
    fn rejects_malformed_framing() {
        assert!(Message::parse(&[0u8; 10]).is_err());
        let good = MessageBuilder::new(Class::Request, method::BINDING, [0; 12])
            .bytes(attr::SOFTWARE, b"x")
            .finish();
        assert!(Message::parse(&good).is_ok());
        assert!(Message::parse(&good[..good.len() - 4]).is_err());
        let mut long_attr = good.clone();
        long_attr[23] = 200;
        assert_eq!(
            Message::parse(&long_attr).unwrap_err(),
            super::super::ParseError::TruncatedAttribute
        );
        let mut bad_cookie = good.clone();
        bad_cookie[4] = 0;
        assert_eq!(
            Message::parse(&bad_cookie).unwrap_err(),
            super::super::ParseError::BadCookie
        );
    }
}
