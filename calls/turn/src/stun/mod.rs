//! STUN message codec (RFC 8489) with the TURN attributes of RFC 8656.
//!
//! Parsing borrows the input and never allocates: [`Message::parse`] validates the header and
//! walks every attribute once, so later lookups can trust the attribute framing. Encoding goes
//! through [`MessageBuilder`], which appends attributes to one buffer and finishes with
//! MESSAGE-INTEGRITY and FINGERPRINT computed over exactly the bytes the RFC names.

mod address;
mod builder;
mod message;

pub use address::{decode_xor_address, encode_xor_address};
pub use builder::MessageBuilder;
pub use message::{Attributes, Message, ParseError};

/// Fixed value in every RFC 5389+ header; distinguishes STUN from other protocols on the port.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_LEN: usize = 20;
/// XORed into the CRC-32 of FINGERPRINT so STUN is told apart from other CRC-protected traffic.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

pub type TransactionId = [u8; 12];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// STUN/TURN methods (12 bits). Unknown methods are kept as numbers so the server can answer
/// them with an error instead of dropping them.
pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// Attribute types this server reads or writes.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    /// Comprehension-required attributes (type < 0x8000) we understand; any other one in a
    /// request is answered with 420 Unknown Attribute.
    pub const UNDERSTOOD_REQUIRED: [u16; 16] = [
        MAPPED_ADDRESS,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
        CHANNEL_NUMBER,
        LIFETIME,
        XOR_PEER_ADDRESS,
        DATA,
        REALM,
        NONCE,
        XOR_RELAYED_ADDRESS,
        REQUESTED_ADDRESS_FAMILY,
        EVEN_PORT,
        REQUESTED_TRANSPORT,
        DONT_FRAGMENT,
    ];
    /// Also understood and comprehension-required, listed apart to keep the array above readable.
    pub const UNDERSTOOD_REQUIRED_EXTRA: [u16; 3] = [
        MESSAGE_INTEGRITY_SHA256,
        XOR_MAPPED_ADDRESS,
        RESERVATION_TOKEN,
    ];

    pub fn is_understood(ty: u16) -> bool {
        ty >= 0x8000 || UNDERSTOOD_REQUIRED.contains(&ty) || UNDERSTOOD_REQUIRED_EXTRA.contains(&ty)
    }
}

/// Encodes method and class into the 14-bit message type (class bits interleaved at 4 and 8).
pub fn message_type(class: Class, method: u16) -> u16 {
    let m = method & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// Splits a message type into class and method.
pub fn split_message_type(ty: u16) -> (Class, u16) {
    let method = (ty & 0x000F) | ((ty >> 1) & 0x0070) | ((ty >> 2) & 0x0F80);
    let class = ((ty >> 4) & 0b01) | ((ty >> 7) & 0b10);
    (Class::from_bits(class), method)
}

/// Rounds an attribute or channel-data length up to the 4-byte boundary STUN pads to.
pub fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// The first byte decides what arrived on a TURN port: 0b00 STUN, 0b01 ChannelData (RFC 8656 §12).
pub fn is_channel_data(first_byte: u8) -> bool {
    first_byte & 0xC0 == 0x40
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_match_the_rfc_values() {
        assert_eq!(message_type(Class::Request, method::BINDING), 0x0001);
        assert_eq!(message_type(Class::Success, method::BINDING), 0x0101);
        assert_eq!(message_type(Class::Error, method::BINDING), 0x0111);
        assert_eq!(message_type(Class::Request, method::ALLOCATE), 0x0003);
        assert_eq!(message_type(Class::Error, method::ALLOCATE), 0x0113);
        assert_eq!(message_type(Class::Indication, method::SEND), 0x0016);
        assert_eq!(message_type(Class::Indication, method::DATA), 0x0017);
        assert_eq!(message_type(Class::Request, method::CHANNEL_BIND), 0x0009);
        for method in 0..0x1000u16 {
            for class in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(
                    split_message_type(message_type(class, method)),
                    (class, method)
                );
            }
        }
    }

    #[test]
    fn padding_and_demultiplexing() {
        assert_eq!(padded(0), 0);
        assert_eq!(padded(1), 4);
        assert_eq!(padded(4), 4);
        assert_eq!(padded(5), 8);
        assert!(is_channel_data(0x40));
        assert!(is_channel_data(0x4F));
        assert!(!is_channel_data(0x00));
        assert!(!is_channel_data(0x80));
    }
}
