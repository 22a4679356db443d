//! Randomised robustness test of the parser and the core (a fuzz target that runs in
//! `cargo test`): random bytes, and valid messages with random bit flips, truncations and
//! attribute splices, must never panic, never allocate without credentials, and never relay
//! without a permission. The seed is printed so a failure can be replayed
//! (`TURN_FUZZ_SEED=<n>`); `TURN_FUZZ_ITERATIONS` runs it longer. The coverage-guided libFuzzer
//! target in `calls/turn/fuzz` (`scripts/fuzz-turn.sh`) checks the same invariants; its committed
//! seeds (and any crash input saved there as a regression) join this test's corpus.

use std::time::Instant;

use calls_turn::{
    core::{ClientAction, CoreConfig, FiveTuple, Now, PeerAction, Transport, TurnCore},
    credentials::KeyRing,
    stun::{attr, method, Class, Message, MessageBuilder},
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn corpus() -> Vec<Vec<u8>> {
    let mut corpus = built_corpus();
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/turn_message");
    let entries = std::fs::read_dir(&seeds).expect("the fuzz seed corpus is committed");
    for entry in entries {
        corpus
            .push(std::fs::read(entry.expect("readable dir entry").path()).expect("readable seed"));
    }
    corpus
}

fn built_corpus() -> Vec<Vec<u8>> {
    let tid = [5u8; 12];
    let peer = "198.51.100.1:9".parse().unwrap();
    vec![
        MessageBuilder::new(Class::Request, method::BINDING, tid).fingerprint(),
        MessageBuilder::new(Class::Request, method::ALLOCATE, tid)
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
            .bytes(attr::USERNAME, b"9999999999:k")
            .bytes(attr::REALM, b"mediaplane")
            .bytes(attr::NONCE, b"0123456789abcdef01234567")
            .integrity(&[1; 16])
            .fingerprint(),
        MessageBuilder::new(Class::Request, method::CHANNEL_BIND, tid)
            .u32(attr::CHANNEL_NUMBER, 0x4000 << 16)
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .integrity(&[1; 16])
            .fingerprint(),
        MessageBuilder::new(Class::Indication, method::SEND, tid)
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .bytes(attr::DATA, b"payload")
            .finish(),
        MessageBuilder::new(Class::Request, method::CREATE_PERMISSION, tid)
            .xor_address(attr::XOR_PEER_ADDRESS, "[2001:db8::1]:9".parse().unwrap())
            .finish(),
        vec![0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4],
    ]
}

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    match rng.random_range(0..5) {
        0 => {
            let len = rng.random_range(0..200);
            (0..len).map(|_| rng.random()).collect()
        }
        1 => {
            let mut m = corpus[rng.random_range(0..corpus.len())].clone();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..m.len());
                m[i] ^= 1 << rng.random_range(0..8);
            }
            m
        }
        2 => {
            let m = &corpus[rng.random_range(0..corpus.len())];
            m[..rng.random_range(0..=m.len())].to_vec()
        }
        3 => {
            // A valid header with random attribute bytes and a consistent length field.
            let body_len = rng.random_range(0..40) * 4;
            let mut m =
                MessageBuilder::new(Class::Request, rng.random_range(0..16), rng.random()).finish();
            m.extend((0..body_len).map(|_| rng.random::<u8>()));
            m[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
            m
        }
        _ => {
            // Length fields lying in both directions.
            let mut m = corpus[rng.random_range(0..corpus.len())].clone();
            if m.len() >= 4 {
                let v: u16 = rng.random();
                m[2..4].copy_from_slice(&v.to_be_bytes());
            }
            m
        }
    }
}

#[test]
fn random_and_mutated_input_never_panics_or_allocates() {
    let seed: u64 = std::env::var("TURN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let iterations: usize = std::env::var("TURN_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    eprintln!("fuzz seed {seed}, {iterations} iterations");
    let mut rng = StdRng::seed_from_u64(seed);
    let corpus = corpus();
    let mut ring = KeyRing::new();
    ring.insert_key("k", "acct", "secret");
    let mut core: TurnCore<u32> = TurnCore::new(CoreConfig::default(), [1; 32]);
    let ft = FiveTuple {
        client: "203.0.113.9:5000".parse().unwrap(),
        server: "192.0.2.1:3478".parse().unwrap(),
        transport: Transport::Udp,
    };
    let now = Now {
        instant: Instant::now(),
        unix: 1_700_000_000,
    };
    let mut parsed = 0usize;
    // Every seed verbatim first (saved crash inputs replay exactly), then the mutations.
    let mutated = (0..iterations).map(|_| mutate(&mut rng, &corpus));
    for input in corpus.clone().into_iter().chain(mutated) {
        if Message::parse(&input).is_ok() {
            parsed += 1;
        }
        match core.handle_client(ft, &input, now, &ring) {
            ClientAction::Allocate(_) => {
                panic!("allocation without credentials (seed {seed}) for input {input:02x?}")
            }
            ClientAction::Relay { .. } => panic!("relay without an allocation (seed {seed})"),
            ClientAction::Reply(reply) => {
                Message::parse(&reply).unwrap_or_else(|e| {
                    panic!("server produced an invalid message ({e}), seed {seed}")
                });
            }
            ClientAction::Ignore => {}
        }
        assert!(matches!(
            core.handle_peer(ft, 1, "198.51.100.1:9".parse().unwrap(), &input, now),
            PeerAction::Gone
        ));
    }
    assert_eq!(core.stats().allocations, 0);
    assert!(parsed > 0, "the mutator also produces valid messages");
}
