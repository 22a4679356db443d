//! State shared between the shards and the handles: where each peer and track lives, and
//! which shard a datagram belongs to. Small maps behind locks; the hot path reads them only
//! for the first datagram from a new address.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Mutex, RwLock},
};

use tokio::sync::watch;

use super::types::Owner;
use crate::media::PeerState;

#[derive(Default)]
pub struct Routes {
    by_ufrag: RwLock<HashMap<String, usize>>,
    by_addr: RwLock<HashMap<SocketAddr, usize>>,
}

impl Routes {
    pub fn add_ufrag(&self, ufrag: &str, shard: usize) {
        self.by_ufrag
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ufrag.to_owned(), shard);
    }

    pub fn remove_peer(&self, ufrag: &str, addrs: &[SocketAddr]) {
        self.by_ufrag
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ufrag);
        let mut by_addr = self.by_addr.write().unwrap_or_else(|e| e.into_inner());
        for addr in addrs {
            by_addr.remove(addr);
        }
    }

    /// The shard for a datagram: known source address first, else the ufrag of a STUN request.
    pub fn shard_for(&self, source: SocketAddr, datagram: &[u8]) -> Option<usize> {
        if let Some(shard) = self
            .by_addr
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&source)
        {
            return Some(*shard);
        }
        let ufrag = super::stun::local_ufrag(datagram)?;
        let shard = *self
            .by_ufrag
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ufrag)?;
        self.by_addr
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source, shard);
        Some(shard)
    }
}

#[derive(Clone)]
pub struct PeerEntry {
    pub shard: usize,
    pub owner: Owner,
    pub account: String,
    pub state: watch::Receiver<PeerState>,
}

/// Which shard owns each peer and track, for the handles to address commands.
#[derive(Default)]
pub struct Directory {
    peers: Mutex<HashMap<String, PeerEntry>>,
    tracks: Mutex<HashMap<String, usize>>,
}

impl Directory {
    pub fn add_peer(&self, id: &str, entry: PeerEntry) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), entry);
    }
    pub fn peer(&self, id: &str) -> Option<PeerEntry> {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
    pub fn remove_peer(&self, id: &str) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
    pub fn add_track(&self, id: &str, shard: usize) {
        self.tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), shard);
    }
    pub fn track(&self, id: &str) -> Option<usize> {
        self.tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }
    pub fn remove_track(&self, id: &str) {
        self.tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
    pub fn peer_count(&self) -> usize {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
