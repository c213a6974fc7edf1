//! `--admin-listen`: the operator's endpoints (`/metrics`, `/healthz`,
//! `/readyz`, `/api/stats`, `/inside`) on an address of their own (say
//! `127.0.0.1:9100`), off the chat's port. Chat connections never come here.
//!
//! Its accept loop starts a thread per request, as the chat's does, but
//! under a cap of its own (`MAX_ADMIN_CONNECTIONS`), so that a scraper gone
//! wild cannot start threads without end nor take the chat's places; a
//! request over it is dropped unanswered (a scraper retries), with no
//! rejecter: these are few and known clients. The loop runs until the very
//! end of shutdown, so that `/healthz` answers 503 to a load balancer
//! through the grace period.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::Sender;
use log::{debug, error};

use super::ServerState;
use crate::config::{MAX_ADMIN_CONNECTIONS, READER_STACK_BYTES};
use crate::connection;
use crate::dispatcher::Event;

/// The accept loop of `--admin-listen`: a thread per operator request,
/// at most `MAX_ADMIN_CONNECTIONS` at once, serving only the operator's
/// endpoints.
pub(super) fn admin_accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    events: Sender<Event>,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if state.admin_closing.load(Ordering::SeqCst) {
            break;
        }
        let Ok(socket) = stream else { continue };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_ADMIN_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: an operator's scraper retries
        }
        let (state, events, busy) = (state.clone(), events.clone(), busy.clone());
        let spawned = thread::Builder::new()
            .name("admin".into())
            .stack_size(READER_STACK_BYTES)
            .spawn(move || {
                // The operator's endpoints sign no one in.
                let services = connection::Services {
                    auth: None,
                    ..state.services(events)
                };
                let closing = || state.admin_closing.load(Ordering::SeqCst);
                connection::serve_admin(socket, &state.config, &services, closing);
                busy.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            error!("cannot start a thread for an operator request: {e}");
        }
    }
    debug!("admin accept loop stopped");
}
