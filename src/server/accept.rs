//! The accept loop, and the connection cap it keeps.
//!
//! The loop does as little as possible: it accepts, takes a `Slot` under the
//! cap, and hands the socket to a new thread, the connection's reader
//! (`connection::serve`). Reading the HTTP request happens on that thread,
//! never here, so a client that connects and then says nothing (slowloris)
//! delays nobody else.
//!
//! The cap is counted by `ConnectionCount`, and each live connection holds
//! one `Slot` of it, given back when the slot is dropped. The slot moves
//! into the connection's thread, so the count goes down however that thread
//! ends: a clean close, an error, a panic, or a thread that could not even
//! be started. Over the cap, the socket goes to the rejecter
//! (`rejecter.rs`) rather than to a thread of its own.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, error, warn};

use super::ServerState;
use crate::config::{ACCEPT_RETRY_DELAY, READER_STACK_BYTES};
use crate::connection;
use crate::dispatcher::Event;
use crate::ids::ConnId;

/// Accepts chat connections until shutdown, a reader thread each; over the
/// cap, the socket goes to `rejecter` (dropped if the rejecter's queue is
/// full).
pub(super) fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    events: Sender<Event>,
    rejecter: Sender<TcpStream>,
) {
    let mut next_id: ConnId = 0;
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        let socket = match stream {
            Ok(socket) => socket,
            Err(e) => {
                // Out of file descriptors, mostly: back off briefly rather
                // than spin, and keep serving the connections we have.
                error!("accept failed: {e}");
                thread::sleep(ACCEPT_RETRY_DELAY);
                continue;
            }
        };
        let Some(slot) = state.try_acquire_slot() else {
            warn!(
                "connection refused: at the cap of {}",
                state.config.max_connections
            );
            if let Err(TrySendError::Full(socket)) = rejecter.try_send(socket) {
                drop(socket);
            }
            continue;
        };
        next_id += 1;
        let conn = next_id;
        let thread_state = state.clone();
        let thread_events = events.clone();
        let spawned = thread::Builder::new()
            .name(format!("reader-{conn}"))
            .stack_size(READER_STACK_BYTES)
            .spawn(move || {
                let _slot = slot; // released when this thread ends, however
                let stopping = || thread_state.stopping.load(Ordering::SeqCst);
                let services = thread_state.services(thread_events);
                connection::serve(conn, socket, &thread_state.config, services, stopping);
            });
        if let Err(e) = spawned {
            // The slot and socket went down with the closure: the client
            // sees its connection close.
            error!("cannot start a thread for a connection: {e}");
        }
    }
    debug!("accept loop stopped");
}

/// Counts live connections; the accept loop checks the cap with it and
/// shutdown waits on it. A `Mutex` and `Condvar` rather than an atomic,
/// because shutdown needs to *wait* for zero, not poll for it.
#[derive(Default)]
pub(super) struct ConnectionCount {
    count: Mutex<usize>,
    changed: Condvar,
}

/// One live connection's place under the cap; given back on drop.
struct Slot(Arc<ServerState>);

impl ConnectionCount {
    /// Connections open right now.
    pub(super) fn get(&self) -> usize {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no connection is open, or `timeout` has passed; returns
    /// whether none is.
    pub(super) fn wait_for_zero(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = match self.changed.wait_timeout(count, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

impl ServerState {
    /// A place under the cap (`--max-connections`), or `None` at the cap.
    fn try_acquire_slot(self: &Arc<Self>) -> Option<Slot> {
        let mut count = self.live.count.lock().unwrap_or_else(|e| e.into_inner());
        if *count >= self.config.max_connections {
            return None;
        }
        *count += 1;
        Some(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let live = &self.0.live;
        let mut count = live.count.lock().unwrap_or_else(|e| e.into_inner());
        *count -= 1;
        live.changed.notify_all();
    }
}
