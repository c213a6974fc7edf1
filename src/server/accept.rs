//! The accept loop, and the caps it keeps.
//!
//! The loop does as little as possible: it accepts, takes a `Slot` under the
//! caps, and hands the socket to a thread of its own, the connection's
//! reader (`connection::serve`): a spare one if one is waiting, its last
//! connection over (`spares.rs`), else a new one. Reading the HTTP request
//! happens on that thread, never here, so a client that connects and then
//! says nothing (slowloris) delays nobody else.
//!
//! Two caps are counted here, together (`ConnectionCount`): connections in
//! all (`--max-connections`) and connections from one client address
//! (`--max-connections-per-ip`). Both are counted from the accept, before
//! the socket has said a word, so sockets that never finish their request
//! count as much as chats do, and one address cannot take every place.
//! Each live connection holds one `Slot`, given back when the slot is
//! dropped. The slot moves into the connection's thread, so the counts go
//! down however that thread ends: a clean close, an error, a panic, or a
//! thread that could not even be started. Over either cap, the socket goes
//! to the rejecter (`rejecter.rs`, 503 or 429) rather than to a thread of
//! its own.
//!
//! A trusted proxy's connection (`--trusted-proxy`) is the exception: its
//! peer is the proxy, a whole class's address. It is counted in all at its
//! accept, and under its client's address once its request names the
//! client (`Slot::count_client`); refused then, it is answered 429 by its
//! own thread, which exists already.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, error, warn};

use super::ServerState;
use super::spares::Spares;
use crate::config::{ACCEPT_RETRY_DELAY, IPV6_CLIENT_PREFIX_BITS, READER_STACK_BYTES};
use crate::connection;
use crate::dispatcher::Event;
use crate::ids::ConnId;
use crate::protocol::Turnaway;

/// Accepts chat connections until shutdown, a reader thread each (a spare
/// or a new one); over a cap, the socket goes to `rejecter` (dropped if the
/// rejecter's queue is full). The spares wait only while this loop runs.
pub(super) fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    events: Sender<Event>,
    rejecter: Sender<(TcpStream, Turnaway)>,
) {
    let mut next_id: ConnId = 0;
    let spares = Spares::new("reader", READER_STACK_BYTES);
    loop {
        let accepted = listener.accept();
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        let (socket, peer) = match accepted {
            Ok((socket, peer)) => (socket, peer.ip().to_canonical()),
            Err(e) => {
                // Out of file descriptors, mostly: back off briefly rather
                // than spin, and keep serving the connections we have.
                error!("accept failed: {e}");
                thread::sleep(ACCEPT_RETRY_DELAY);
                continue;
            }
        };
        let proxied = state.is_trusted_proxy(peer);
        let slot = match state.try_acquire_slot(peer, proxied) {
            Ok(slot) => slot,
            Err(turnaway) => {
                match turnaway {
                    Turnaway::ServerFull => warn!(
                        "connection refused: at the cap of {}",
                        state.config.max_connections
                    ),
                    Turnaway::TooManyFromAddress { limit } => {
                        warn!("connection from {peer} refused: {limit} open from that address")
                    }
                }
                if let Err(TrySendError::Full((socket, _))) = rejecter.try_send((socket, turnaway))
                {
                    drop(socket);
                }
                continue;
            }
        };
        next_id += 1;
        let conn = next_id;
        let thread_state = state.clone();
        let thread_events = events.clone();
        let job = Box::new(move || {
            let mut slot = slot; // released when this job ends, however
            let stopping = || thread_state.stopping.load(Ordering::SeqCst);
            let services = thread_state.services(thread_events);
            let mut count_client = |client| slot.count_client(client);
            let accepted = connection::Accepted {
                conn,
                socket,
                peer,
                via_proxy: proxied.then_some(&mut count_client),
            };
            connection::serve(accepted, &thread_state.config, services, stopping);
        });
        if let Err(e) = spares.hand(format!("reader-{conn}"), job) {
            // The slot and socket went down with the job: the client sees
            // its connection close.
            error!("cannot start a thread for a connection: {e}");
        }
    }
    debug!("accept loop stopped");
}

/// Counts live connections, in all and per client address; the accept loop
/// checks the caps with it and shutdown waits on it.
///
/// One `Mutex` over both counts: a new connection is checked against both
/// and raises both in one step, and a closing one lowers both in one step,
/// so no thread ever sees them half-updated. It is held for a hash lookup,
/// once per accept and once per close. The alternative, an owner thread
/// reached by channels, would cost every accept and every close a round
/// trip to it, for no state that needs more than this. And a `Condvar`,
/// because shutdown needs to *wait* for zero, not poll for it.
#[derive(Default)]
pub(super) struct ConnectionCount {
    counts: Mutex<Counts>,
    changed: Condvar,
}

#[derive(Default)]
struct Counts {
    live: usize,
    /// Connections per client address, of those counted by address. An
    /// address leaves the map with its last connection, so the map never
    /// holds more entries than there are connections.
    by_address: HashMap<ClientKey, usize>,
}

/// What a client is counted under: its IPv4 address, or its IPv6
/// address's network (`IPV6_CLIENT_PREFIX_BITS`), since one IPv6 client
/// may use any address of its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(IpAddr);

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V6(ip) => {
                let host_bits = 128 - u32::from(IPV6_CLIENT_PREFIX_BITS.min(128));
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                ClientKey(IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask)))
            }
            v4 => ClientKey(v4),
        }
    }
}

/// One live connection's place under the caps; given back on drop.
struct Slot {
    state: Arc<ServerState>,
    /// The address it is counted under, if any: none with the limit per
    /// address off, and none yet for a trusted proxy's connection.
    client: Option<ClientKey>,
}

impl ConnectionCount {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open right now.
    pub(super) fn get(&self) -> usize {
        self.lock().live
    }

    /// Waits until no connection is open, or `timeout` has passed; returns
    /// whether none is.
    pub(super) fn wait_for_zero(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut counts = self.lock();
        while counts.live > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            counts = match self.changed.wait_timeout(counts, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

impl Counts {
    /// Whether `key` may have one more connection.
    fn check_client(&self, key: ClientKey, limit: usize) -> Result<(), Turnaway> {
        match self.by_address.get(&key) {
            Some(&count) if count >= limit => Err(Turnaway::TooManyFromAddress { limit }),
            _ => Ok(()),
        }
    }

    /// Counts one more connection under `key`, unless it holds `limit`.
    fn add_client(&mut self, key: ClientKey, limit: usize) -> Result<(), Turnaway> {
        self.check_client(key, limit)?;
        *self.by_address.entry(key).or_insert(0) += 1;
        Ok(())
    }

    /// One connection under `key` has ended.
    fn remove_client(&mut self, key: ClientKey) {
        if let Some(count) = self.by_address.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.by_address.remove(&key);
            }
        }
    }
}

impl ServerState {
    /// Whether `peer` is a proxy whose forwarding headers are believed.
    fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let proxies = &self.config.trusted_proxies;
        proxies.iter().any(|range| range.contains(peer))
    }

    /// A place under the caps for a connection from `peer`, counted under
    /// `peer`'s address unless it is a trusted proxy (`proxied`); or which
    /// cap it is over.
    fn try_acquire_slot(self: &Arc<Self>, peer: IpAddr, proxied: bool) -> Result<Slot, Turnaway> {
        let limit = self.config.max_connections_per_ip;
        let client = (limit > 0 && !proxied).then(|| ClientKey::of(peer));
        let mut counts = self.live.lock();
        // The address's own limit first: its owner is told it is the cause.
        if let Some(key) = client {
            counts.check_client(key, limit)?;
        }
        if counts.live >= self.config.max_connections {
            return Err(Turnaway::ServerFull);
        }
        if let Some(key) = client {
            counts.add_client(key, limit)?;
        }
        counts.live += 1;
        Ok(Slot {
            state: self.clone(),
            client,
        })
    }
}

impl Slot {
    /// Counts a trusted proxy's connection under the client its request
    /// names, or says that address is at its limit. Counted once: a slot
    /// that is counted already (or has no limit to keep) is left alone.
    fn count_client(&mut self, client: IpAddr) -> Result<(), Turnaway> {
        let limit = self.state.config.max_connections_per_ip;
        if limit == 0 || self.client.is_some() {
            return Ok(());
        }
        let key = ClientKey::of(client);
        self.state.live.lock().add_client(key, limit)?;
        self.client = Some(key);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let live = &self.state.live;
        let mut counts = live.lock();
        counts.live -= 1;
        if let Some(key) = self.client {
            counts.remove_client(key);
        }
        live.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_network_and_ipv4_by_its_address() {
        let key = |text: &str| ClientKey::of(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    }

    #[test]
    fn an_address_is_refused_at_its_limit_and_forgotten_at_zero() {
        let mut counts = Counts::default();
        let key = ClientKey::of("192.0.2.1".parse().unwrap());
        assert!(counts.add_client(key, 2).is_ok());
        assert!(counts.add_client(key, 2).is_ok());
        assert_eq!(
            counts.add_client(key, 2),
            Err(Turnaway::TooManyFromAddress { limit: 2 })
        );
        counts.remove_client(key);
        assert!(counts.add_client(key, 2).is_ok());
        counts.remove_client(key);
        counts.remove_client(key);
        assert!(counts.by_address.is_empty());
    }
}
