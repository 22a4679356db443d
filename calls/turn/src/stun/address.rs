//! XOR-MAPPED-ADDRESS / XOR-PEER-ADDRESS / XOR-RELAYED-ADDRESS encoding (RFC 8489 §14.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{TransactionId, MAGIC_COOKIE};

const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

/// Decodes an XOR address value; `None` for a bad family or length.
pub fn decode_xor_address(value: &[u8], transaction_id: &TransactionId) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (value[1], value.len()) {
        (FAMILY_IPV4, 8) => {
            let mut ip = [0u8; 4];
            for (i, byte) in ip.iter_mut().enumerate() {
                *byte = value[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (FAMILY_IPV6, 20) => {
            let mut ip = [0u8; 16];
            for (i, byte) in ip.iter_mut().enumerate() {
                let mask = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                *byte = value[4 + i] ^ mask;
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Appends the XOR-encoded value of `addr` to `out`.
pub fn encode_xor_address(out: &mut Vec<u8>, addr: SocketAddr, transaction_id: &TransactionId) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, FAMILY_IPV4]);
            out.extend_from_slice(&port.to_be_bytes());
            for (i, byte) in ip.octets().iter().enumerate() {
                out.push(byte ^ cookie[i]);
            }
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, FAMILY_IPV6]);
            out.extend_from_slice(&port.to_be_bytes());
            for (i, byte) in ip.octets().iter().enumerate() {
                let mask = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                out.push(byte ^ mask);
            }
        }
    }
}

/// Appends a plain (non-XOR) MAPPED-ADDRESS value, for RFC 3489-era clients.
pub fn encode_plain_address(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, FAMILY_IPV4]);
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, FAMILY_IPV6]);
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        let tid = [7u8; 12];
        for addr in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            encode_xor_address(&mut out, addr, &tid);
            assert_eq!(decode_xor_address(&out, &tid), Some(addr));
        }
    }

    #[test]
    fn rejects_bad_values() {
        let tid = [0u8; 12];
        assert_eq!(decode_xor_address(&[], &tid), None);
        assert_eq!(decode_xor_address(&[0, 1, 0, 0, 1, 2, 3], &tid), None);
        assert_eq!(decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &tid), None);
    }
}
