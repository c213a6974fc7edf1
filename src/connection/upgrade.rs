//! A WebSocket's opening: admitted to its room by the dispatcher, the 101
//! sent, the writer started; then the reader's loop (`reader.rs`) until the
//! connection ends, and the goodbye that is said on every way out.
//!
//! ## Why every exit path sends `Disconnected`
//!
//! The dispatcher must hear about every connection that ends, or a vanished
//! user would stay in everyone's list. `ReaderGuard` sends the event from its
//! `Drop` (`reader.rs`), so it is sent on a clean close, on an error and on
//! a panic alike.

use std::cell::Cell;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;

use log::{debug, warn};

use super::reader::{ReaderGuard, read_pump};
use super::{Services, respond, writer};
use crate::ask::{Unanswered, ask};
use crate::config::{ADMISSION_TIMEOUT, Config, WRITER_STACK_BYTES};
use crate::dispatcher::Event;
use crate::http;
use crate::ids::ConnId;
use crate::metrics::{CloseReason, HandshakeStatus};
use crate::outbox;

/// An upgrade `http::route` accepted, waiting for the dispatcher's word.
pub(super) struct Upgrade {
    pub(super) room: String,
    /// The 101 response, sent once the room admits the connection.
    pub(super) response: Vec<u8>,
    /// Bytes read past the request head: the start of the WebSocket stream.
    pub(super) leftover: Vec<u8>,
}

/// Runs a WebSocket connection: asks the dispatcher to admit it to `room`,
/// completes the handshake, starts its writer, then reads until the
/// connection ends.
pub(super) fn chat(
    id: ConnId,
    socket: Arc<TcpStream>,
    upgrade: Upgrade,
    config: &Config,
    services: &Services,
    shutting_down: &dyn Fn() -> bool,
) {
    let events = &services.events;
    let _ = socket.set_nodelay(true);
    let (outbox, inbox) = outbox::outbox(
        socket.clone(),
        config.outbound_messages,
        config.outbound_bytes,
    );
    let Upgrade {
        room,
        response,
        leftover,
    } = upgrade;
    // The dispatcher may know this connection as soon as it is asked, so
    // every way out from here must tell it: the guard does, on drop.
    let guard = ReaderGuard {
        id,
        events,
        outbox: &outbox,
        metrics: &services.metrics,
        reason: Cell::new(CloseReason::Other),
    };
    let connected = |admitted| Event::Connected {
        conn: id,
        room,
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
        warn!("conn {id}: WebSocket handshake refused: 503: {why}");
        services
            .metrics
            .handshake_refused(HandshakeStatus::Unavailable);
        respond(
            &socket,
            &http::status_response("503 Service Unavailable", &why),
        );
        return;
    }
    if let Err(e) = (&*socket).write_all(&response) {
        debug!("conn {id}: handshake write failed: {e}");
        return;
    }
    let (write_timeout, write_batch) = (config.write_timeout, config.write_batch);
    let writer_metrics = services.metrics.clone();
    let writer = thread::Builder::new()
        .name(format!("writer-{id}"))
        .stack_size(WRITER_STACK_BYTES)
        .spawn(move || writer::run(id, inbox, write_timeout, write_batch, writer_metrics));
    let writer = match writer {
        Ok(handle) => handle,
        Err(e) => {
            warn!("conn {id}: cannot start writer thread: {e}");
            return;
        }
    };
    debug!("conn {id}: WebSocket open");
    let auth = services.auth.as_deref();
    read_pump(&guard, socket, leftover, config, auth, shutting_down);
    if guard.outbox.is_abandoned() {
        guard.reason.set(CloseReason::SlowConsumer);
    }
    // The guard tells the dispatcher and the writer; then wait for the
    // writer so the connection's threads are all gone when this one ends.
    drop(guard);
    let _ = writer.join();
    debug!("conn {id}: closed");
}
