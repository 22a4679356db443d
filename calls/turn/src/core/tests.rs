//! Scenario tests of the core, driven like a client would, with a fake clock.

use super::*;
use crate::credentials::{credential_for, KeyRing};

const SECRET: &str = "key-secret";

struct Harness {
    core: TurnCore<u32>,
    ring: KeyRing,
    now: Now,
    ft: FiveTuple,
    username: String,
    password: String,
    nonce: Vec<u8>,
    next_relay_port: u16,
}

fn tid(n: u8) -> TransactionId {
    [n; 12]
}

impl Harness {
    fn new(config: CoreConfig) -> Self {
        let mut ring = KeyRing::new();
        ring.insert_key("key1", "acct1", SECRET);
        let now = Now {
            instant: Instant::now(),
            unix: 1_000_000,
        };
        let username = format!("{}:key1.test", now.unix + 3600);
        let password = credential_for(SECRET, &username);
        Harness {
            core: TurnCore::new(config, [3; 32]),
            ring,
            now,
            ft: FiveTuple {
                client: "203.0.113.5:40000".parse().unwrap(),
                server: "192.0.2.1:3478".parse().unwrap(),
                transport: Transport::Udp,
            },
            username,
            password,
            nonce: Vec::new(),
            next_relay_port: 50000,
        }
    }

    fn default() -> Self {
        Self::new(CoreConfig {
            advertised_ip: Some("192.0.2.1".parse().unwrap()),
            ..CoreConfig::default()
        })
    }

    fn key(&self) -> [u8; 16] {
        long_term_key(&self.username, "mediaplane", &self.password)
    }

    fn signed(&self, builder: MessageBuilder) -> Vec<u8> {
        builder
            .bytes(attr::USERNAME, self.username.as_bytes())
            .bytes(attr::REALM, b"mediaplane")
            .bytes(attr::NONCE, &self.nonce)
            .integrity(&self.key())
            .fingerprint()
    }

    /// Sends `bytes` and returns the reply (binding a relay when asked).
    fn send(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let action = self
            .core
            .handle_client(self.ft, bytes, self.now, &self.ring);
        match action {
            ClientAction::Reply(reply) => Some(reply),
            ClientAction::Allocate(mut ticket) => {
                let port = self.next_relay_port;
                self.next_relay_port += 1;
                let local = SocketAddr::new("0.0.0.0".parse().unwrap(), port);
                let binding = match ticket.reserved.take() {
                    Some((relay, local)) => RelayBinding {
                        relay,
                        local,
                        reserved: None,
                    },
                    None => {
                        let reserved = ticket
                            .reserve_next
                            .then(|| (u32::from(port) + 1, SocketAddr::new(local.ip(), port + 1)));
                        if reserved.is_some() {
                            self.next_relay_port += 1;
                        }
                        RelayBinding {
                            relay: u32::from(port),
                            local,
                            reserved,
                        }
                    }
                };
                Some(self.core.finish_allocate(ticket, Ok(binding), self.now).0)
            }
            ClientAction::Ignore | ClientAction::Relay { .. } => None,
        }
    }

    fn error_code(reply: &[u8]) -> Option<u16> {
        let message = Message::parse(reply).unwrap();
        let v = message.get(attr::ERROR_CODE)?;
        Some(u16::from(v[2]) * 100 + u16::from(v[3]))
    }

    /// Gets a nonce through the 401 challenge, then allocates.
    fn allocate(&mut self) -> Vec<u8> {
        let unsigned = MessageBuilder::new(Class::Request, method::ALLOCATE, tid(1))
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
            .fingerprint();
        let challenge = self.send(&unsigned).unwrap();
        assert_eq!(Self::error_code(&challenge), Some(401));
        self.nonce = Message::parse(&challenge)
            .unwrap()
            .get(attr::NONCE)
            .unwrap()
            .to_vec();
        let request = self.signed(
            MessageBuilder::new(Class::Request, method::ALLOCATE, tid(2))
                .u32(attr::REQUESTED_TRANSPORT, 17 << 24),
        );
        self.send(&request).unwrap()
    }

    fn permission(&mut self, peer: SocketAddr, n: u8) -> Vec<u8> {
        let request = self.signed(
            MessageBuilder::new(Class::Request, method::CREATE_PERMISSION, tid(n))
                .xor_address(attr::XOR_PEER_ADDRESS, peer),
        );
        self.send(&request).unwrap()
    }
}

fn peer() -> SocketAddr {
    "198.51.100.7:9000".parse().unwrap()
}

#[test]
fn binding_reports_the_reflexive_address() {
    let mut h = Harness::default();
    let reply = h
        .send(&MessageBuilder::new(Class::Request, method::BINDING, tid(1)).fingerprint())
        .unwrap();
    let message = Message::parse(&reply).unwrap();
    assert_eq!(message.class, Class::Success);
    assert_eq!(
        decode_xor_address(message.get(attr::XOR_MAPPED_ADDRESS).unwrap(), &tid(1)),
        Some(h.ft.client)
    );
}

#[test]
fn allocate_challenges_then_succeeds_with_a_signed_response() {
    let mut h = Harness::default();
    let reply = h.allocate();
    let message = Message::parse(&reply).unwrap();
    assert_eq!(
        message.class,
        Class::Success,
        "error {:?}",
        Harness::error_code(&reply)
    );
    assert!(message.verify_integrity(&h.key()));
    let relayed =
        decode_xor_address(message.get(attr::XOR_RELAYED_ADDRESS).unwrap(), &tid(2)).unwrap();
    assert_eq!(relayed, "192.0.2.1:50000".parse().unwrap());
    assert_eq!(message.get(attr::LIFETIME), Some(&600u32.to_be_bytes()[..]));
    assert_eq!(h.core.stats().allocations, 1);
    // A retransmission gets the same answer without a second relay.
    let again = h.signed(
        MessageBuilder::new(Class::Request, method::ALLOCATE, tid(2))
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24),
    );
    assert_eq!(h.send(&again).unwrap(), reply);
    // A new Allocate on the same 5-tuple is a mismatch.
    let other = h.signed(
        MessageBuilder::new(Class::Request, method::ALLOCATE, tid(3))
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24),
    );
    assert_eq!(Harness::error_code(&h.send(&other).unwrap()), Some(437));
}

#[test]
fn forged_expired_and_revoked_credentials_are_rejected() {
    let mut h = Harness::default();
    h.password = "forged".into();
    assert_eq!(Harness::error_code(&h.allocate()), Some(401));

    let mut h = Harness::default();
    h.username = format!("{}:key1.old", h.now.unix - 1);
    h.password = credential_for(SECRET, &h.username);
    assert_eq!(Harness::error_code(&h.allocate()), Some(401));

    let mut h = Harness::default();
    let username = h.username.clone();
    h.ring.revoke("key1", &username);
    assert_eq!(Harness::error_code(&h.allocate()), Some(401));
    assert_eq!(h.core.stats().allocations, 0);
}

#[test]
fn stale_nonces_get_438_with_a_fresh_nonce() {
    let mut h = Harness::default();
    assert!(Harness::error_code(&h.allocate()).is_none());
    h.now.unix += 601;
    let reply = h.permission(peer(), 5);
    assert_eq!(Harness::error_code(&reply), Some(438));
    let fresh = Message::parse(&reply)
        .unwrap()
        .get(attr::NONCE)
        .unwrap()
        .to_vec();
    assert_ne!(fresh, h.nonce);
    h.nonce = fresh;
    assert!(Harness::error_code(&h.permission(peer(), 6)).is_none());
}

#[test]
fn send_indication_and_data_indication_need_a_permission() {
    let mut h = Harness::default();
    h.allocate();
    let send = MessageBuilder::new(Class::Indication, method::SEND, tid(9))
        .xor_address(attr::XOR_PEER_ADDRESS, peer())
        .bytes(attr::DATA, b"hello")
        .fingerprint();
    assert!(matches!(
        h.core.handle_client(h.ft, &send, h.now, &h.ring),
        ClientAction::Ignore
    ));
    assert!(matches!(
        h.core.handle_peer(h.ft, 1, peer(), b"back", h.now),
        PeerAction::Ignore
    ));

    assert!(Harness::error_code(&h.permission(peer(), 4)).is_none());
    match h.core.handle_client(h.ft, &send, h.now, &h.ring) {
        ClientAction::Relay {
            relay,
            peer: to,
            data,
        } => {
            assert_eq!((relay, to, data), (50000, peer(), &b"hello"[..]));
        }
        _ => panic!("expected relay"),
    }
    let PeerAction::ToClient(indication) = h.core.handle_peer(h.ft, 1, peer(), b"back", h.now)
    else {
        panic!("expected data")
    };
    let message = Message::parse(&indication).unwrap();
    assert_eq!(
        (message.class, message.method),
        (Class::Indication, method::DATA)
    );
    assert_eq!(message.get(attr::DATA), Some(&b"back"[..]));
    assert_eq!(
        decode_xor_address(
            message.get(attr::XOR_PEER_ADDRESS).unwrap(),
            &message.transaction_id()
        ),
        Some(peer())
    );
    assert!(matches!(
        h.core.handle_peer(h.ft, 99, peer(), b"x", h.now),
        PeerAction::Gone
    ));

    let usage = h.core.drain_usage();
    assert_eq!(usage, vec![("acct1".into(), indication.len() as u64)]);
    assert!(h.core.drain_usage().is_empty());
}

#[test]
fn channels_carry_data_both_ways() {
    let mut h = Harness::default();
    h.allocate();
    let bind = h.signed(
        MessageBuilder::new(Class::Request, method::CHANNEL_BIND, tid(7))
            .u32(attr::CHANNEL_NUMBER, 0x4001 << 16)
            .xor_address(attr::XOR_PEER_ADDRESS, peer()),
    );
    assert!(Harness::error_code(&h.send(&bind).unwrap()).is_none());
    let frame = [0x40, 0x01, 0, 3, b'a', b'b', b'c', 0];
    match h.core.handle_client(h.ft, &frame, h.now, &h.ring) {
        ClientAction::Relay { data, peer: to, .. } => assert_eq!((data, to), (&b"abc"[..], peer())),
        _ => panic!("expected relay"),
    }
    let PeerAction::ToClient(out) = h.core.handle_peer(h.ft, 1, peer(), b"xyz", h.now) else {
        panic!()
    };
    assert_eq!(out, vec![0x40, 0x01, 0, 3, b'x', b'y', b'z']);
    // Out-of-range numbers and truncated frames are refused or dropped.
    let bad = h.signed(
        MessageBuilder::new(Class::Request, method::CHANNEL_BIND, tid(8))
            .u32(attr::CHANNEL_NUMBER, 0x8000 << 16)
            .xor_address(attr::XOR_PEER_ADDRESS, peer()),
    );
    assert_eq!(Harness::error_code(&h.send(&bad).unwrap()), Some(400));
    assert!(matches!(
        h.core
            .handle_client(h.ft, &[0x40, 0x01, 0, 9, 1], h.now, &h.ring),
        ClientAction::Ignore
    ));
    // Over TCP, frames to the client are padded to four bytes.
    let mut t = Harness::default();
    t.ft.transport = Transport::Tcp;
    t.allocate();
    let bind = t.signed(
        MessageBuilder::new(Class::Request, method::CHANNEL_BIND, tid(7))
            .u32(attr::CHANNEL_NUMBER, 0x4001 << 16)
            .xor_address(attr::XOR_PEER_ADDRESS, peer()),
    );
    t.send(&bind);
    let PeerAction::ToClient(out) = t.core.handle_peer(t.ft, 1, peer(), b"xyz", t.now) else {
        panic!()
    };
    assert_eq!(out.len(), 8);
}

#[test]
fn internal_peers_are_forbidden_unless_allowed() {
    let mut h = Harness::default();
    h.allocate();
    assert_eq!(
        Harness::error_code(&h.permission("127.0.0.1:9".parse().unwrap(), 4)),
        Some(403)
    );
    assert_eq!(
        Harness::error_code(&h.permission("10.0.0.1:9".parse().unwrap(), 5)),
        Some(403)
    );
    assert_eq!(
        Harness::error_code(&h.permission("[2001:db8::1]:9".parse().unwrap(), 6)),
        Some(443)
    );
    let mut open = Harness::new(CoreConfig {
        peer_policy: PeerPolicy {
            allow_loopback: true,
            allow_private: false,
        },
        ..CoreConfig::default()
    });
    open.allocate();
    assert!(Harness::error_code(&open.permission("127.0.0.1:9".parse().unwrap(), 4)).is_none());
}

#[test]
fn quota_lifetimes_refresh_and_revocation() {
    let mut h = Harness::new(CoreConfig {
        user_quota: 1,
        ..CoreConfig::default()
    });
    h.allocate();
    h.ft.client = "203.0.113.5:40001".parse().unwrap();
    assert_eq!(Harness::error_code(&h.allocate()), Some(486));
    h.ft.client = "203.0.113.5:40000".parse().unwrap();

    // Refresh with lifetime 0 deletes; then the quota frees up.
    let refresh = h.signed(
        MessageBuilder::new(Class::Request, method::REFRESH, tid(20)).u32(attr::LIFETIME, 0),
    );
    assert!(Harness::error_code(&h.send(&refresh).unwrap()).is_none());
    assert_eq!(h.core.stats().allocations, 0);
    assert_eq!(Harness::error_code(&h.send(&refresh).unwrap()), Some(437));

    assert!(Harness::error_code(&h.allocate()).is_none());
    let refresh = h.signed(
        MessageBuilder::new(Class::Request, method::REFRESH, tid(21)).u32(attr::LIFETIME, 99_999),
    );
    let reply = h.send(&refresh).unwrap();
    assert_eq!(
        Message::parse(&reply).unwrap().get(attr::LIFETIME),
        Some(&3600u32.to_be_bytes()[..]),
        "clamped to the maximum"
    );
    let mut later = h.now;
    later.instant += Duration::from_secs(3599);
    assert!(h.core.tick(later, &h.ring).is_empty());
    later.instant += Duration::from_secs(2);
    assert_eq!(h.core.tick(later, &h.ring), vec![50001]);

    assert!(Harness::error_code(&h.allocate()).is_none());
    let username = h.username.clone();
    h.ring.revoke("key1", &username);
    assert_eq!(
        h.core.tick(h.now, &h.ring).len(),
        1,
        "revocation ends live allocations"
    );
}

#[test]
fn unknown_required_attributes_get_420() {
    let mut h = Harness::default();
    let request = MessageBuilder::new(Class::Request, method::BINDING, tid(1))
        .bytes(0x0042, b"zz")
        .fingerprint();
    let reply = h.send(&request).unwrap();
    assert_eq!(Harness::error_code(&reply), Some(420));
    assert_eq!(
        Message::parse(&reply)
            .unwrap()
            .get(attr::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x42][..])
    );
    // Comprehension-optional ones are ignored.
    let request = MessageBuilder::new(Class::Request, method::BINDING, tid(1))
        .bytes(0x8042, b"zz")
        .fingerprint();
    assert!(Harness::error_code(&h.send(&request).unwrap()).is_none());
}

#[test]
fn unsupported_transport_and_missing_attributes() {
    let mut h = Harness::default();
    h.allocate();
    h.ft.client = "203.0.113.5:40009".parse().unwrap();
    let tcp = h.signed(
        MessageBuilder::new(Class::Request, method::ALLOCATE, tid(30))
            .u32(attr::REQUESTED_TRANSPORT, 6 << 24),
    );
    assert_eq!(Harness::error_code(&h.send(&tcp).unwrap()), Some(442));
    let none = h.signed(MessageBuilder::new(
        Class::Request,
        method::ALLOCATE,
        tid(31),
    ));
    assert_eq!(Harness::error_code(&h.send(&none).unwrap()), Some(400));
    let no_realm = MessageBuilder::new(Class::Request, method::ALLOCATE, tid(32))
        .bytes(attr::USERNAME, b"x")
        .integrity(b"k")
        .fingerprint();
    assert_eq!(Harness::error_code(&h.send(&no_realm).unwrap()), Some(400));
}

#[test]
fn even_port_reservations_serve_a_second_allocation() {
    let mut h = Harness::default();
    let unsigned = MessageBuilder::new(Class::Request, method::ALLOCATE, tid(1))
        .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
        .fingerprint();
    h.nonce = Message::parse(&h.send(&unsigned).unwrap())
        .unwrap()
        .get(attr::NONCE)
        .unwrap()
        .to_vec();
    let rtp = h.signed(
        MessageBuilder::new(Class::Request, method::ALLOCATE, tid(2))
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
            .bytes(attr::EVEN_PORT, &[0x80]),
    );
    let reply = h.send(&rtp).unwrap();
    let message = Message::parse(&reply).unwrap();
    let token = message
        .get(attr::RESERVATION_TOKEN)
        .expect("token")
        .to_vec();
    h.ft.client = "203.0.113.5:40001".parse().unwrap();
    let rtcp = h.signed(
        MessageBuilder::new(Class::Request, method::ALLOCATE, tid(3))
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
            .bytes(attr::RESERVATION_TOKEN, &token),
    );
    let reply = h.send(&rtcp).unwrap();
    let message = Message::parse(&reply).unwrap();
    assert_eq!(
        decode_xor_address(message.get(attr::XOR_RELAYED_ADDRESS).unwrap(), &tid(3))
            .unwrap()
            .port(),
        50001
    );
    // A token works once.
    h.ft.client = "203.0.113.5:40002".parse().unwrap();
    let again = h.signed(
        MessageBuilder::new(Class::Request, method::ALLOCATE, tid(4))
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
            .bytes(attr::RESERVATION_TOKEN, &token),
    );
    assert_eq!(Harness::error_code(&h.send(&again).unwrap()), Some(508));
}
