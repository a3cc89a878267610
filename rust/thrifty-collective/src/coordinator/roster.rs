//! Who is connected to the coordinator: for each peer, the serial of its connection (a lost
//! peer may come back under the same id, and what its old connection still says must not act
//! on the new one), its peer-to-peer address, and when it was admitted.

use std::collections::HashMap;

use crate::message::{PeerId, View};

struct Peer {
    serial: u64,
    p2p_addr: String,
    /// Order of admission; older peers come first among peers on one host.
    admitted: u64,
}

/// The connected peers: members of the committed view and pending ones.
#[derive(Default)]
pub struct Roster {
    peers: HashMap<PeerId, Peer>,
    next_admission: u64,
}

impl Roster {
    pub fn admit(&mut self, id: PeerId, serial: u64, p2p_addr: String) {
        let admitted = self.next_admission;
        self.next_admission += 1;
        self.peers.insert(
            id,
            Peer {
                serial,
                p2p_addr,
                admitted,
            },
        );
    }

    pub fn contains(&self, id: PeerId) -> bool {
        self.peers.contains_key(&id)
    }

    /// Whether connection `serial` is the one peer `id` is connected on.
    pub fn is_current(&self, id: PeerId, serial: u64) -> bool {
        self.peers.get(&id).is_some_and(|p| p.serial == serial)
    }

    /// Remove a peer; its peer-to-peer address, if it was here.
    pub fn remove(&mut self, id: PeerId) -> Option<String> {
        self.peers.remove(&id).map(|p| p.p2p_addr)
    }

    /// Remove every peer; their ids.
    pub fn clear(&mut self) -> Vec<PeerId> {
        self.peers.drain().map(|(id, _)| id).collect()
    }

    /// Where the other peers dial `id` (empty if it is not here).
    pub fn p2p_addr(&self, id: PeerId) -> &str {
        self.peers.get(&id).map_or("", |p| p.p2p_addr.as_str())
    }

    /// Sort `ids` (all here) into ring order: by host, so that peers on one host end up
    /// adjacent and the ring crosses each host boundary once, then oldest first.
    pub fn ring_order(&self, ids: &mut [PeerId]) {
        ids.sort_by_key(|id| {
            let peer = &self.peers[id];
            (host_of(&peer.p2p_addr), peer.admitted)
        });
    }

    /// Connected peers outside `view`, oldest first.
    pub fn pending(&self, view: &View) -> Vec<PeerId> {
        let mut pending: Vec<(&PeerId, &Peer)> = self
            .peers
            .iter()
            .filter(|(id, _)| view.rank_of(**id).is_none())
            .collect();
        pending.sort_by_key(|(_, p)| p.admitted);
        pending.iter().map(|(id, _)| **id).collect()
    }
}

/// The host part of `host:port` (`[v6]:port` too), which ring order groups by.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return &rest[..end];
        }
    }
    match addr.rfind(':') {
        Some(colon) => &addr[..colon],
        None => addr,
    }
}
