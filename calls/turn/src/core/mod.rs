//! The sans-IO TURN server: datagrams/frames and times in, response bytes and forwarding
//! decisions out. It never touches a socket; the shells in `net` own those and ask the core what
//! to do with every message.
//!
//! Relay sockets are the one thing the core cannot create itself: an Allocate that passes every
//! check comes back as [`ClientAction::Allocate`] with a ticket; the shell binds a relay socket
//! and hands it in with [`TurnCore::finish_allocate`], which stores it (as the opaque handle `R`)
//! and produces the response.

mod allocation;
mod nonce;
pub mod peer_policy;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

pub use allocation::{parse_channel_data, Lane, PeerAction, CHANNEL_MAX, CHANNEL_MIN};
use allocation::{Allocation, BindError, Counters, Identity};
use nonce::{NonceCheck, NonceIssuer};
use peer_policy::PeerPolicy;

use crate::{
    credentials::{long_term_key, CredentialSource, Owner},
    stun::{self, attr, decode_xor_address, method, Class, Message, MessageBuilder, TransactionId},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Stream transports pad ChannelData to four bytes (RFC 8656 §12.5).
    fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Client address, server address and transport: the key of an allocation (RFC 8656 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub realm: String,
    pub software: String,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub nonce_lifetime: Duration,
    /// Allocations one username may hold at once.
    pub user_quota: usize,
    /// Allocations the whole server may hold.
    pub total_quota: usize,
    pub peer_policy: PeerPolicy,
    /// Address announced in XOR-RELAYED-ADDRESS (public IP behind NAT); `None` uses the relay
    /// socket's own IP.
    pub advertised_ip: Option<IpAddr>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            realm: "mediaplane".into(),
            software: concat!("mediaplane-turn/", env!("CARGO_PKG_VERSION")).into(),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            nonce_lifetime: Duration::from_secs(600),
            user_quota: 10,
            total_quota: 10_000,
            peer_policy: PeerPolicy::default(),
            advertised_ip: None,
        }
    }
}

/// The clock the core runs on: a monotonic instant for lifetimes, unix seconds for credential
/// and nonce expiry.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix: u64,
}

impl Now {
    pub fn system() -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            instant: Instant::now(),
            unix,
        }
    }
}

/// What the shell does with a client message.
pub enum ClientAction<'a, R> {
    /// Drop it (malformed, unauthenticated indication, no permission…).
    Ignore,
    /// Send these bytes back to the client on the same transport.
    Reply(Vec<u8>),
    /// Send `data` from the relay socket `relay` to `peer`.
    Relay {
        relay: R,
        peer: SocketAddr,
        data: &'a [u8],
    },
    /// Bind a relay socket and call [`TurnCore::finish_allocate`].
    Allocate(AllocateTicket<R>),
}

/// An authorised Allocate waiting for its relay socket.
#[derive(Debug)]
pub struct AllocateTicket<R> {
    pub five_tuple: FiveTuple,
    pub ipv6: bool,
    pub even_port: bool,
    /// EVEN-PORT with the R bit: also bind the next (odd) port and keep it for a later Allocate
    /// that presents the RESERVATION-TOKEN (RFC 8656 §7.2, used by RTP/RTCP pairs).
    pub reserve_next: bool,
    /// A socket reserved earlier: the shell uses it instead of binding.
    pub reserved: Option<(R, SocketAddr)>,
    transaction_id: TransactionId,
    username: String,
    key: [u8; 16],
    owner: Owner,
    lifetime: Duration,
}

/// What the shell bound for an Allocate.
pub struct RelayBinding<R> {
    pub relay: R,
    pub local: SocketAddr,
    /// The next port, bound when the ticket asked to reserve it.
    pub reserved: Option<(R, SocketAddr)>,
}

/// How long a reserved port waits for its RESERVATION-TOKEN (RFC 8656 §7.2 suggests 30 s).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// Errors answered with an ERROR-CODE (RFC 8489 §14.8, RFC 8656 §19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunError {
    BadRequest,
    Unauthorized,
    Forbidden,
    UnknownAttribute,
    AllocationMismatch,
    StaleNonce,
    AddressFamilyNotSupported,
    WrongCredentials,
    UnsupportedTransport,
    PeerAddressFamilyMismatch,
    AllocationQuotaReached,
    ServerError,
    InsufficientCapacity,
}

impl StunError {
    pub fn code(self) -> u16 {
        match self {
            StunError::BadRequest => 400,
            StunError::Unauthorized => 401,
            StunError::Forbidden => 403,
            StunError::UnknownAttribute => 420,
            StunError::AllocationMismatch => 437,
            StunError::StaleNonce => 438,
            StunError::AddressFamilyNotSupported => 440,
            StunError::WrongCredentials => 441,
            StunError::UnsupportedTransport => 442,
            StunError::PeerAddressFamilyMismatch => 443,
            StunError::AllocationQuotaReached => 486,
            StunError::ServerError => 500,
            StunError::InsufficientCapacity => 508,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            StunError::BadRequest => "Bad Request",
            StunError::Unauthorized => "Unauthorized",
            StunError::Forbidden => "Forbidden",
            StunError::UnknownAttribute => "Unknown Attribute",
            StunError::AllocationMismatch => "Allocation Mismatch",
            StunError::StaleNonce => "Stale Nonce",
            StunError::AddressFamilyNotSupported => "Address Family not Supported",
            StunError::WrongCredentials => "Wrong Credentials",
            StunError::UnsupportedTransport => "Unsupported Transport Protocol",
            StunError::PeerAddressFamilyMismatch => "Peer Address Family Mismatch",
            StunError::AllocationQuotaReached => "Allocation Quota Reached",
            StunError::ServerError => "Server Error",
            StunError::InsufficientCapacity => "Insufficient Capacity",
        }
    }
}

/// Counters for logs and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub allocations: usize,
    pub malformed: u64,
    pub auth_failures: u64,
    pub relayed_to_peer: u64,
    pub relayed_to_client: u64,
}

/// A verified request: who sent it and the key its response is signed with.
struct Authenticated {
    username: String,
    key: [u8; 16],
    owner: Owner,
}

const REQUESTED_TRANSPORT_UDP: u8 = 17;
const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

pub struct TurnCore<R> {
    config: CoreConfig,
    nonces: NonceIssuer,
    allocations: HashMap<FiveTuple, Allocation<R>>,
    per_user: HashMap<String, usize>,
    next_id: u64,
    /// Metered bytes of allocations already removed, per account.
    usage_backlog: HashMap<std::sync::Arc<str>, u64>,
    reservations: HashMap<[u8; 8], (R, SocketAddr, Instant)>,
    stats: Stats,
    /// Relayed-packet counters, shared with the lanes that do the relaying.
    counters: std::sync::Arc<Counters>,
}

impl<R: Clone> TurnCore<R> {
    pub fn new(config: CoreConfig, nonce_secret: [u8; 32]) -> Self {
        let nonces = NonceIssuer::new(nonce_secret, config.nonce_lifetime.as_secs());
        Self {
            config,
            nonces,
            allocations: HashMap::new(),
            per_user: HashMap::new(),
            next_id: 1,
            usage_backlog: HashMap::new(),
            reservations: HashMap::new(),
            stats: Stats::default(),
            counters: std::sync::Arc::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        Stats {
            allocations: self.allocations.len(),
            relayed_to_peer: self.counters.relayed_to_peer.load(Relaxed),
            relayed_to_client: self.counters.relayed_to_client.load(Relaxed),
            ..self.stats
        }
    }

    /// Handles one STUN message or ChannelData frame from a client.
    pub fn handle_client<'a>(
        &mut self,
        ft: FiveTuple,
        data: &'a [u8],
        now: Now,
        creds: &dyn CredentialSource,
    ) -> ClientAction<'a, R> {
        let Some(&first) = data.first() else {
            return ClientAction::Ignore;
        };
        if stun::is_channel_data(first) {
            return self.channel_data_from_client(ft, data, now);
        }
        let message = match Message::parse(data) {
            Ok(message) => message,
            Err(_) => {
                self.stats.malformed += 1;
                return ClientAction::Ignore;
            }
        };
        match message.class {
            Class::Request => self.handle_request(ft, &message, now, creds),
            Class::Indication if message.method == method::SEND => {
                self.send_indication(ft, &message, now)
            }
            // Responses and other indications are not for a server.
            _ => ClientAction::Ignore,
        }
    }

    fn channel_data_from_client<'a>(
        &mut self,
        ft: FiveTuple,
        data: &'a [u8],
        now: Now,
    ) -> ClientAction<'a, R> {
        let Some((number, payload)) = parse_channel_data(data) else {
            self.stats.malformed += 1;
            return ClientAction::Ignore;
        };
        let Some(allocation) = self.allocations.get(&ft) else {
            return ClientAction::Ignore;
        };
        let Some(peer) = allocation.lane.channel_destination(number, now.instant) else {
            return ClientAction::Ignore;
        };
        ClientAction::Relay {
            relay: allocation.relay().clone(),
            peer,
            data: payload,
        }
    }

    fn send_indication<'a>(
        &mut self,
        ft: FiveTuple,
        message: &Message<'a>,
        now: Now,
    ) -> ClientAction<'a, R> {
        let Some(allocation) = self.allocations.get(&ft) else {
            return ClientAction::Ignore;
        };
        let tid = message.transaction_id();
        let (Some(peer), Some(data)) = (
            message
                .get(attr::XOR_PEER_ADDRESS)
                .and_then(|v| decode_xor_address(v, &tid)),
            message.get(attr::DATA),
        ) else {
            return ClientAction::Ignore;
        };
        if !allocation.has_permission(peer.ip(), now.instant) {
            return ClientAction::Ignore;
        }
        self.counters
            .relayed_to_peer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ClientAction::Relay {
            relay: allocation.relay().clone(),
            peer,
            data,
        }
    }

    fn handle_request<'a>(
        &mut self,
        ft: FiveTuple,
        message: &Message<'_>,
        now: Now,
        creds: &dyn CredentialSource,
    ) -> ClientAction<'a, R> {
        let tid = message.transaction_id();
        let unknown: Vec<u16> = message
            .attributes()
            .map(|(ty, _)| ty)
            .filter(|ty| !attr::is_understood(*ty))
            .collect();
        if !unknown.is_empty() {
            let reply = self
                .error_builder(message.method, tid, StunError::UnknownAttribute)
                .unknown_attributes(&unknown)
                .fingerprint();
            return ClientAction::Reply(reply);
        }
        match message.method {
            method::BINDING => ClientAction::Reply(self.binding_response(ft, tid)),
            method::ALLOCATE
            | method::REFRESH
            | method::CREATE_PERMISSION
            | method::CHANNEL_BIND => {
                let auth = match self.authenticate(ft, message, now, creds) {
                    Ok(auth) => auth,
                    Err(reply) => return ClientAction::Reply(reply),
                };
                let result = match message.method {
                    method::ALLOCATE => return self.allocate(ft, message, auth),
                    method::REFRESH => self.refresh(ft, message, now),
                    method::CREATE_PERMISSION => self.create_permission(ft, message, now),
                    _ => self.channel_bind(ft, message, now),
                };
                ClientAction::Reply(match result {
                    Ok(builder) => builder.integrity(&auth.key).fingerprint(),
                    Err(error) => self
                        .error_builder(message.method, tid, error)
                        .integrity(&auth.key)
                        .fingerprint(),
                })
            }
            _ => ClientAction::Reply(
                self.error_builder(message.method, tid, StunError::BadRequest)
                    .fingerprint(),
            ),
        }
    }

    fn binding_response(&self, ft: FiveTuple, tid: TransactionId) -> Vec<u8> {
        MessageBuilder::new(Class::Success, method::BINDING, tid)
            .xor_address(attr::XOR_MAPPED_ADDRESS, ft.client)
            .mapped_address(ft.client)
            .bytes(attr::SOFTWARE, self.config.software.as_bytes())
            .fingerprint()
    }

    fn error_builder(&self, method: u16, tid: TransactionId, error: StunError) -> MessageBuilder {
        MessageBuilder::new(Class::Error, method, tid)
            .error_code(error.code(), error.reason())
            .bytes(attr::SOFTWARE, self.config.software.as_bytes())
    }

    /// A 401 or 438 carrying a fresh nonce and the realm, unsigned (the client has no key yet).
    fn challenge(
        &self,
        ft: FiveTuple,
        method: u16,
        tid: TransactionId,
        error: StunError,
        now: Now,
    ) -> Vec<u8> {
        let nonce = self.nonces.issue(ft.client.ip(), now.unix);
        self.error_builder(method, tid, error)
            .bytes(attr::REALM, self.config.realm.as_bytes())
            .bytes(attr::NONCE, nonce.as_bytes())
            .fingerprint()
    }

    /// RFC 8489 §9.2.4 long-term credential checks, in the RFC's order.
    fn authenticate(
        &mut self,
        ft: FiveTuple,
        message: &Message<'_>,
        now: Now,
        creds: &dyn CredentialSource,
    ) -> Result<Authenticated, Vec<u8>> {
        let tid = message.transaction_id();
        let m = message.method;
        if !message.has_integrity() {
            return Err(self.challenge(ft, m, tid, StunError::Unauthorized, now));
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            message.get(attr::USERNAME),
            message.get(attr::REALM),
            message.get(attr::NONCE),
        ) else {
            return Err(self
                .error_builder(m, tid, StunError::BadRequest)
                .fingerprint());
        };
        match self.nonces.check(nonce, ft.client.ip(), now.unix) {
            NonceCheck::Valid => {}
            NonceCheck::Stale | NonceCheck::Invalid => {
                return Err(self.challenge(ft, m, tid, StunError::StaleNonce, now))
            }
        }
        let (Ok(username), Ok(realm)) = (std::str::from_utf8(username), std::str::from_utf8(realm))
        else {
            self.stats.auth_failures += 1;
            return Err(self.challenge(ft, m, tid, StunError::Unauthorized, now));
        };
        if realm != self.config.realm {
            self.stats.auth_failures += 1;
            return Err(self.challenge(ft, m, tid, StunError::Unauthorized, now));
        }
        // An existing allocation is keyed to the username that made it (RFC 8656 §5).
        if let Some(allocation) = self.allocations.get(&ft) {
            if m != method::ALLOCATE && allocation.username != username {
                return Err(self
                    .error_builder(m, tid, StunError::WrongCredentials)
                    .fingerprint());
            }
        }
        let mut key = [0u8; 16];
        let realm_name = self.config.realm.clone();
        let resolved = creds.resolve(username, now.unix, &mut |password| {
            key = long_term_key(username, &realm_name, password);
            message.verify_integrity(&key)
        });
        match resolved {
            Ok(owner) => Ok(Authenticated {
                username: username.to_string(),
                key,
                owner,
            }),
            Err(reason) => {
                self.stats.auth_failures += 1;
                tracing::debug!(client = %ft.client, username, ?reason, "TURN authentication failed");
                // Every failure is a 401 with a fresh challenge; the reason is only logged, so a
                // client cannot tell a revoked credential from a forged one.
                Err(self.challenge(ft, m, tid, StunError::Unauthorized, now))
            }
        }
    }

    fn allocate<'a>(
        &mut self,
        ft: FiveTuple,
        message: &Message<'_>,
        auth: Authenticated,
    ) -> ClientAction<'a, R> {
        let tid = message.transaction_id();
        let fail = |core: &Self, error: StunError| {
            ClientAction::Reply(
                core.error_builder(method::ALLOCATE, tid, error)
                    .integrity(&auth.key)
                    .fingerprint(),
            )
        };
        if let Some(existing) = self.allocations.get(&ft) {
            // A retransmission gets the same answer; anything else is a mismatch (RFC 8656 §7.2).
            if existing.allocate_tid == tid && existing.username == auth.username {
                return ClientAction::Reply(existing.allocate_response.clone());
            }
            return fail(self, StunError::AllocationMismatch);
        }
        match message.get(attr::REQUESTED_TRANSPORT) {
            None => return fail(self, StunError::BadRequest),
            Some(v) if v.len() != 4 => return fail(self, StunError::BadRequest),
            Some(v) if v[0] != REQUESTED_TRANSPORT_UDP => {
                return fail(self, StunError::UnsupportedTransport)
            }
            Some(_) => {}
        }
        let even_port = message.get(attr::EVEN_PORT);
        let token = message.get(attr::RESERVATION_TOKEN);
        if even_port.is_some() && token.is_some() {
            return fail(self, StunError::BadRequest);
        }
        let reserved = match token {
            None => None,
            Some(token) => {
                let Ok(token) = <[u8; 8]>::try_from(token) else {
                    return fail(self, StunError::BadRequest);
                };
                match self.reservations.remove(&token) {
                    Some((relay, local, _)) => Some((relay, local)),
                    // Unknown or expired token: the reserved port is gone (RFC 8656 §7.2: 508).
                    None => return fail(self, StunError::InsufficientCapacity),
                }
            }
        };
        let reserve_next = even_port
            .and_then(|v| v.first())
            .is_some_and(|b| b & 0x80 != 0);
        let even_port = even_port.is_some();
        let ipv6 = match message.get(attr::REQUESTED_ADDRESS_FAMILY) {
            None => false,
            Some([FAMILY_IPV4, ..]) => false,
            Some([FAMILY_IPV6, ..]) => true,
            Some(_) => return fail(self, StunError::AddressFamilyNotSupported),
        };
        if self.per_user.get(&auth.username).copied().unwrap_or(0) >= self.config.user_quota {
            return fail(self, StunError::AllocationQuotaReached);
        }
        if self.allocations.len() >= self.config.total_quota {
            return fail(self, StunError::InsufficientCapacity);
        }
        let lifetime = self.lifetime(message).max(Duration::from_secs(1));
        ClientAction::Allocate(AllocateTicket {
            five_tuple: ft,
            ipv6,
            even_port,
            reserve_next,
            reserved,
            transaction_id: tid,
            username: auth.username,
            key: auth.key,
            owner: auth.owner,
            lifetime,
        })
    }

    /// Completes an Allocate with the relay socket the shell bound (`Ok((handle, local address))`)
    /// or the reason it could not (`Err`). Returns the response and, on success, the allocation's
    /// [`Lane`], through which the shell relays without locking the core.
    pub fn finish_allocate(
        &mut self,
        ticket: AllocateTicket<R>,
        relay: Result<RelayBinding<R>, StunError>,
        now: Now,
    ) -> (Vec<u8>, Option<std::sync::Arc<Lane<R>>>) {
        let tid = ticket.transaction_id;
        let RelayBinding {
            relay,
            local,
            reserved,
        } = match relay {
            Ok(bound) => bound,
            Err(error) => {
                return (
                    self.error_builder(method::ALLOCATE, tid, error)
                        .integrity(&ticket.key)
                        .fingerprint(),
                    None,
                )
            }
        };
        let token = reserved.map(|(relay, local)| {
            let token: [u8; 8] = rand::random();
            self.reservations
                .insert(token, (relay, local, now.instant + RESERVATION_LIFETIME));
            token
        });
        let relayed = SocketAddr::new(
            self.config.advertised_ip.unwrap_or(local.ip()),
            local.port(),
        );
        let id = self.next_id;
        self.next_id += 1;
        let mut builder = MessageBuilder::new(Class::Success, method::ALLOCATE, tid)
            .xor_address(attr::XOR_RELAYED_ADDRESS, relayed)
            .u32(attr::LIFETIME, ticket.lifetime.as_secs() as u32)
            .xor_address(attr::XOR_MAPPED_ADDRESS, ticket.five_tuple.client);
        if let Some(token) = token {
            builder = builder.bytes(attr::RESERVATION_TOKEN, &token);
        }
        let response = builder
            .bytes(attr::SOFTWARE, self.config.software.as_bytes())
            .integrity(&ticket.key)
            .fingerprint();
        let mut allocation = Allocation::new(
            Identity {
                id,
                username: ticket.username.clone(),
                owner: ticket.owner,
                stream: ticket.five_tuple.transport.is_stream(),
                counters: self.counters.clone(),
            },
            relay,
            relayed,
            now.instant + ticket.lifetime,
            tid,
        );
        allocation.allocate_response = response.clone();
        *self.per_user.entry(ticket.username).or_insert(0) += 1;
        tracing::debug!(client = %ticket.five_tuple.client, %relayed, allocation = id, "TURN allocation created");
        let lane = allocation.lane.clone();
        self.allocations.insert(ticket.five_tuple, allocation);
        (response, Some(lane))
    }

    /// LIFETIME requested, clamped to the server's maximum; the default when absent.
    fn lifetime(&self, message: &Message<'_>) -> Duration {
        match message.get(attr::LIFETIME) {
            Some(&[a, b, c, d]) => Duration::from_secs(u64::from(u32::from_be_bytes([a, b, c, d])))
                .min(self.config.max_lifetime),
            _ => self.config.default_lifetime,
        }
    }

    fn refresh(
        &mut self,
        ft: FiveTuple,
        message: &Message<'_>,
        now: Now,
    ) -> Result<MessageBuilder, StunError> {
        let tid = message.transaction_id();
        let lifetime = self.lifetime(message);
        let software = self.config.software.clone();
        if !self.allocations.contains_key(&ft) {
            return Err(StunError::AllocationMismatch);
        }
        if lifetime.is_zero() {
            self.remove(&ft);
        } else if let Some(allocation) = self.allocations.get_mut(&ft) {
            allocation.expires = now.instant + lifetime;
        }
        Ok(MessageBuilder::new(Class::Success, method::REFRESH, tid)
            .u32(attr::LIFETIME, lifetime.as_secs() as u32)
            .bytes(attr::SOFTWARE, software.as_bytes()))
    }

    /// Validates a peer address for an allocation: family and the peer policy.
    fn check_peer(&self, relayed: SocketAddr, peer: SocketAddr) -> Result<(), StunError> {
        if relayed.is_ipv4() != peer.is_ipv4() {
            return Err(StunError::PeerAddressFamilyMismatch);
        }
        if !self.config.peer_policy.permits(peer.ip()) {
            return Err(StunError::Forbidden);
        }
        Ok(())
    }

    fn create_permission(
        &mut self,
        ft: FiveTuple,
        message: &Message<'_>,
        now: Now,
    ) -> Result<MessageBuilder, StunError> {
        let tid = message.transaction_id();
        let relayed = self
            .allocations
            .get(&ft)
            .ok_or(StunError::AllocationMismatch)?
            .relayed;
        let mut peers = Vec::new();
        for (ty, value) in message.attributes() {
            if ty == attr::XOR_PEER_ADDRESS {
                let peer = decode_xor_address(value, &tid).ok_or(StunError::BadRequest)?;
                self.check_peer(relayed, peer)?;
                peers.push(peer);
            }
        }
        if peers.is_empty() {
            return Err(StunError::BadRequest);
        }
        let allocation = self
            .allocations
            .get_mut(&ft)
            .ok_or(StunError::AllocationMismatch)?;
        for peer in peers {
            allocation.install_permission(peer.ip(), now.instant);
        }
        Ok(
            MessageBuilder::new(Class::Success, method::CREATE_PERMISSION, tid)
                .bytes(attr::SOFTWARE, self.config.software.as_bytes()),
        )
    }

    fn channel_bind(
        &mut self,
        ft: FiveTuple,
        message: &Message<'_>,
        now: Now,
    ) -> Result<MessageBuilder, StunError> {
        let tid = message.transaction_id();
        let relayed = self
            .allocations
            .get(&ft)
            .ok_or(StunError::AllocationMismatch)?
            .relayed;
        let number = match message.get(attr::CHANNEL_NUMBER) {
            Some(&[a, b, _, _]) => u16::from_be_bytes([a, b]),
            _ => return Err(StunError::BadRequest),
        };
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&number) {
            return Err(StunError::BadRequest);
        }
        let peer = message
            .get(attr::XOR_PEER_ADDRESS)
            .and_then(|v| decode_xor_address(v, &tid))
            .ok_or(StunError::BadRequest)?;
        self.check_peer(relayed, peer)?;
        let allocation = self
            .allocations
            .get_mut(&ft)
            .ok_or(StunError::AllocationMismatch)?;
        allocation
            .bind_channel(number, peer, now.instant)
            .map_err(|BindError::Conflict| StunError::BadRequest)?;
        Ok(
            MessageBuilder::new(Class::Success, method::CHANNEL_BIND, tid)
                .bytes(attr::SOFTWARE, self.config.software.as_bytes()),
        )
    }

    /// A datagram from `peer` arrived on the relay socket of allocation `id` for `ft`. The shell
    /// calls [`Lane::from_peer`] on the lane it was given instead; this is the same decision
    /// reached through the core.
    pub fn handle_peer(
        &mut self,
        ft: FiveTuple,
        id: u64,
        peer: SocketAddr,
        data: &[u8],
        now: Now,
    ) -> PeerAction {
        match self.allocations.get(&ft).filter(|a| a.id == id) {
            Some(allocation) => allocation.lane.from_peer(peer, data, now.instant),
            None => PeerAction::Gone,
        }
    }

    fn remove(&mut self, ft: &FiveTuple) -> Option<R> {
        let allocation = self.allocations.remove(ft)?;
        if let Some(count) = self.per_user.get_mut(&allocation.username) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_user.remove(&allocation.username);
            }
        }
        let unmetered = allocation.close();
        if unmetered > 0 {
            *self
                .usage_backlog
                .entry(allocation.owner.account_id.clone())
                .or_insert(0) += unmetered;
        }
        tracing::debug!(client = %ft.client, allocation = allocation.id, "TURN allocation removed");
        Some(allocation.relay().clone())
    }

    /// The client's connection closed (TCP/TLS): its allocation ends with it (RFC 8656 §3.1).
    pub fn close_transport(&mut self, ft: &FiveTuple) -> Option<R> {
        self.remove(ft)
    }

    /// Expires allocations, permissions and channels, and ends allocations whose credentials were
    /// revoked or whose key was deleted. Returns the relay handles to close.
    pub fn tick(&mut self, now: Now, creds: &dyn CredentialSource) -> Vec<R> {
        let doomed: Vec<FiveTuple> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now.instant || !creds.still_valid(&a.username, &a.owner))
            .map(|(ft, _)| *ft)
            .collect();
        for allocation in self.allocations.values_mut() {
            allocation.expire(now.instant);
        }
        let mut ended: Vec<R> = doomed.iter().filter_map(|ft| self.remove(ft)).collect();
        let stale: Vec<[u8; 8]> = self
            .reservations
            .iter()
            .filter(|(_, (_, _, expires))| *expires <= now.instant)
            .map(|(t, _)| *t)
            .collect();
        ended.extend(
            stale
                .iter()
                .filter_map(|t| self.reservations.remove(t))
                .map(|(relay, _, _)| relay),
        );
        ended
    }

    /// Hands out relayed bytes per account since the last call.
    pub fn drain_usage(&mut self) -> Vec<(std::sync::Arc<str>, u64)> {
        let mut usage: HashMap<std::sync::Arc<str>, u64> = std::mem::take(&mut self.usage_backlog);
        for allocation in self.allocations.values() {
            let bytes = allocation.lane.take_egress();
            if bytes > 0 {
                *usage
                    .entry(allocation.owner.account_id.clone())
                    .or_insert(0) += bytes;
            }
        }
        usage.into_iter().collect()
    }

    /// Removes every allocation (shutdown) and returns their relay handles.
    pub fn clear(&mut self) -> Vec<R> {
        let all: Vec<FiveTuple> = self.allocations.keys().copied().collect();
        let mut ended: Vec<R> = all.iter().filter_map(|ft| self.remove(ft)).collect();
        ended.extend(self.reservations.drain().map(|(_, (relay, _, _))| relay));
        ended
    }

    pub fn realm(&self) -> &str {
        &self.config.realm
    }
}

#[cfg(test)]
mod tests;
