//! Coverage-guided fuzzing of what an unauthenticated client can send to the TURN port: the STUN
//! parser and the sans-IO core behind it. Invariants (the same the seeded randomized test in
//! `tests/fuzz_parser.rs` checks in `cargo test`): no panic, no allocation and no relaying without
//! valid credentials, every reply is itself a well-formed STUN message, and peer-side input for a
//! relay that does not exist is dropped.
#![no_main]

use std::{sync::OnceLock, time::Instant};

use calls_turn::{
    core::{ClientAction, CoreConfig, FiveTuple, Now, PeerAction, Transport, TurnCore},
    credentials::KeyRing,
    stun::Message,
};
use libfuzzer_sys::fuzz_target;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let mut ring = KeyRing::new();
        ring.insert_key("k", "acct", "secret");
        ring
    })
}

fuzz_target!(|input: &[u8]| {
    let _ = Message::parse(input);
    // A fresh core per input keeps runs independent, so any crash reproduces from its one input.
    let mut core: TurnCore<u32> = TurnCore::new(CoreConfig::default(), [1; 32]);
    let five_tuple = FiveTuple {
        client: "203.0.113.9:5000".parse().expect("literal address"),
        server: "192.0.2.1:3478".parse().expect("literal address"),
        transport: Transport::Udp,
    };
    let now = Now {
        instant: Instant::now(),
        unix: 1_700_000_000,
    };
    match core.handle_client(five_tuple, input, now, ring()) {
        ClientAction::Allocate(_) => panic!("allocation without credentials"),
        ClientAction::Relay { .. } => panic!("relay without an allocation"),
        ClientAction::Reply(reply) => {
            if let Err(e) = Message::parse(&reply) {
                panic!("server produced an invalid message: {e}");
            }
        }
        ClientAction::Ignore => {}
    }
    let peer = "198.51.100.1:9".parse().expect("literal address");
    assert!(matches!(
        core.handle_peer(five_tuple, 1, peer, input, now),
        PeerAction::Gone
    ));
    assert_eq!(core.stats().allocations, 0);
});
