//! A WebSocket's opening: admitted to its room by the dispatcher, the 101
//! sent, the outbox opened; then the reader's loop (`reader.rs`) until the
//! connection ends, and the goodbye that is said on every way out.
//!
//! ## Why every exit path sends `Disconnected`
//!
//! The dispatcher must hear about every connection that ends, or a vanished
//! user would stay in everyone's list. `ReaderGuard` sends the event from its
//! `Drop` (`guard.rs`), so it is sent on a clean close, on an error and on
//! a panic alike.
//!
//! ## The conformance echo
//!
//! With `--conformance-echo PATH`, an upgrade on that path is not a chat:
//! every message it sends comes back to it, so that the Autobahn TestSuite
//! can check the server's WebSocket (`make conformance`). It is handled
//! here, *before* admission: the dispatcher is never asked and never hears
//! of it, so it is in no room, counts in no list and receives no broadcast,
//! and its guard has no dispatcher to tell. Everything else is the chat's:
//! the same 101, the same outbox and writer thread, the same read pump with
//! the same size and rate limits; only what the pump does with a message
//! differs (`reader::Purpose`). The alternative rejected: admitting it to a
//! hidden room, which would have put a test's connection into the one
//! thread that owns the chat. The price: the dispatcher cannot tell it the
//! server is stopping, so its reader looks for itself (`ECHO_STOP_POLL`).
//! The echo bypasses sign-in, which is why the server refuses to start
//! with both (`server::Server::bind`).

use std::cell::Cell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use log::{debug, info, warn};

use super::guard::ReaderGuard;
use super::reader::{Purpose, read_pump};
use super::stack;
use super::{Services, respond, writer};
use crate::ask::{Unanswered, ask};
use crate::config::{ADMISSION_TIMEOUT, CLOSE_WAIT_MARGIN, Config, WRITE_POLL_INTERVAL};
use crate::dispatcher::Event;
use crate::http;
use crate::ids::ConnId;
use crate::metrics::{CloseReason, HandshakeStatus};
use crate::net::Stream;
use crate::outbox::{self, Inbox};

/// What every accepted upgrade carries: the answer to send and the bytes
/// already read.
pub(super) struct Opening {
    /// The 101 response, sent once the connection may go ahead.
    pub(super) response: Vec<u8>,
    /// Bytes read past the request head: the start of the WebSocket stream.
    pub(super) leftover: Vec<u8>,
}

/// An upgrade `http::route` accepted, waiting for the dispatcher's word.
pub(super) struct Upgrade {
    pub(super) room: String,
    /// Who the client is: the socket's peer, or behind a trusted proxy the
    /// address the proxy named; what this connection's log lines show.
    pub(super) client: IpAddr,
    pub(super) opening: Opening,
}

/// Runs a WebSocket connection: asks the dispatcher to admit it to `room`,
/// completes the handshake, starts its writer, then reads until the
/// connection ends.
pub(super) fn chat(
    id: ConnId,
    socket: Arc<Stream>,
    upgrade: Upgrade,
    config: &Config,
    services: &Services,
    shutting_down: &dyn Fn() -> bool,
) {
    let events = &services.events;
    let (outbox, inbox) = outbox::outbox(
        socket.clone(),
        config.outbound_messages,
        config.outbound_bytes,
    );
    let Upgrade {
        room,
        client,
        opening,
    } = upgrade;
    // The dispatcher may know this connection as soon as it is asked, so
    // every way out from here must tell it: the guard does, on drop.
    let guard = ReaderGuard {
        id,
        events: Some(events),
        outbox: &outbox,
        metrics: &services.metrics,
        reason: Cell::new(CloseReason::Other),
    };
    let connected = |admitted| Event::Connected {
        conn: id,
        room: room.clone(),
        outbox: outbox.clone(),
        admitted,
    };
    let refusal = match ask(events, connected, ADMISSION_TIMEOUT) {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(Unanswered::Gone) => return,
        Err(Unanswered::Late | Unanswered::Busy) => {
            Some("the server is too busy; try again later".to_string())
        }
    };
    if let Some(why) = refusal {
        warn!("conn {id}: WebSocket handshake from {client} refused: 503: {why}");
        services
            .metrics
            .handshake_refused(HandshakeStatus::Unavailable);
        respond(
            id,
            &socket,
            &http::status_response("503 Service Unavailable", &why),
        );
        return;
    }
    info!("conn {id}: WebSocket open from {client} in room {room:?}");
    let purpose = Purpose::Chat {
        auth: services.auth.as_deref(),
        room: &room,
    };
    talk(
        guard,
        socket,
        inbox,
        opening,
        purpose,
        config,
        shutting_down,
    );
}

/// Runs a connection on the `--conformance-echo` path: no admission (see
/// the module comment), then the same handshake, writer and read pump as a
/// chat's, echoing.
pub(super) fn echo(
    id: ConnId,
    socket: Arc<Stream>,
    opening: Opening,
    config: &Config,
    services: &Services,
    shutting_down: &dyn Fn() -> bool,
) {
    let (outbox, inbox) = outbox::outbox(
        socket.clone(),
        config.outbound_messages,
        config.outbound_bytes,
    );
    let guard = ReaderGuard {
        id,
        events: None,
        outbox: &outbox,
        metrics: &services.metrics,
        reason: Cell::new(CloseReason::Other),
    };
    debug!("conn {id}: conformance echo");
    talk(
        guard,
        socket,
        inbox,
        opening,
        Purpose::Echo,
        config,
        shutting_down,
    );
}

/// Sends the 101, opens the outbox (frames then reach the socket, in place
/// or through a writer thread started on demand), runs the read pump, and
/// says goodbye.
fn talk(
    guard: ReaderGuard,
    socket: Arc<Stream>,
    inbox: Inbox,
    opening: Opening,
    purpose: Purpose,
    config: &Config,
    shutting_down: &dyn Fn() -> bool,
) {
    let id = guard.id;
    let _ = socket.set_nodelay(true);
    if let Err(e) = (&*socket).write_all(&opening.response) {
        debug!("conn {id}: handshake write failed: {e}");
        return;
    }
    // A writer's blocked write wakes this often to see whether its client
    // was dropped meanwhile (`writer.rs`).
    if let Err(e) = socket.set_write_timeout(Some(WRITE_POLL_INTERVAL)) {
        debug!("conn {id}: cannot set write timeout: {e}");
        return;
    }
    let writers = Arc::new(writer::Writers {
        id,
        write_timeout: config.write_timeout,
        max_batch: config.write_batch,
        metrics: guard.metrics.clone(),
        max_writers: config.max_writers,
    });
    inbox.open(Box::new(writers));
    // The opening went deep; the read loop stays shallow (`stack.rs`).
    stack::give_back_below_here();
    read_pump(
        &guard,
        socket,
        opening.leftover,
        config,
        purpose,
        shutting_down,
    );
    if guard.outbox.is_abandoned() {
        guard.reason.set(CloseReason::SlowConsumer);
    }
    // The guard tells the dispatcher and finishes the queue; then wait for
    // the last write, so the connection's writing is over when this thread
    // ends. Bounded: a writer gives up within the write timeout.
    let outbox = guard.outbox.clone();
    drop(guard);
    outbox.wait_closed(config.write_timeout + CLOSE_WAIT_MARGIN);
    debug!("conn {id}: closed");
}
