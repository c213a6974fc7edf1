//! One socket's life, on its own thread: the front door, then for a
//! WebSocket the reader, its writer, and its goodbye.
//!
//! Each accepted socket gets its own thread, which reads the HTTP request,
//! answers it, and, for a WebSocket, stays on as the connection's *reader*
//! and starts a second thread, the *writer* (`writer.rs`).
//!
//! ```text
//! accept ── serve: read the request head (http::read_request_head)
//!             ├─ a page, an API or operator endpoint: answer it, close
//!             └─ a WebSocket upgrade (upgrade.rs):
//!                  the dispatcher admits it to its room ── or 503
//!                  101 sent, writer started (writer.rs)
//!                  read pump (reader.rs) until the connection ends
//!                  goodbye: Disconnected to the dispatcher, the writer joined
//! ```
//!
//! Until the writer thread starts, this thread is the socket's only user,
//! so it may write HTTP responses itself; after, only the writer writes.

pub mod rate_limit;
mod reader;
pub mod session;
mod upgrade;
pub mod writer;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use crate::archivist::Read;
use crate::auth::AuthConfig;
use crate::config::Config;
use crate::dispatcher::Event;
use crate::http::{self, HeadError, Route, admin, api};
use crate::ids::ConnId;
use crate::metrics::{HandshakeStatus, Metrics};

/// A chat text that makes the reader panic, in builds with the
/// `fault-injection` feature; tests use it to show that one connection's
/// panic harms nobody else.
#[cfg(feature = "fault-injection")]
pub const PANIC_TRIGGER: &str = "__threadchat_fault_injection_panic__";

/// What a connection is given by the server: the channels to the threads
/// that own the server's state (a connection talks to them only through
/// these), and the key that checks sign-in tokens.
pub struct Services {
    /// The dispatcher: the chat.
    pub events: Sender<Event>,
    /// The store's queue of reads (the archivist's, or with `--redis` the
    /// courier's): older chats and readiness (`None` with history off).
    pub store: Option<Sender<Read>>,
    /// The sign-in check (`None` with sign-in off); immutable, so shared.
    pub auth: Option<Arc<AuthConfig>>,
    /// The server's counters (atomics: updating one never waits).
    pub metrics: Arc<Metrics>,
    /// The server's count of open connections, for `/metrics`.
    pub connections: Box<dyn Fn() -> usize + Send>,
}

/// Serves one accepted socket from its HTTP request to its close.
pub fn serve(
    id: ConnId,
    socket: TcpStream,
    config: &Config,
    services: Services,
    shutting_down: impl Fn() -> bool,
) {
    let _alive = services.metrics.reader_alive();
    let deadline = Instant::now() + config.handshake_timeout;
    let (head, leftover) = match http::read_request_head(&socket, deadline, &shutting_down) {
        Ok(request) => request,
        Err(HeadError::Malformed(why)) => {
            warn!("conn {id}: bad HTTP request: {why}");
            let _ = (&socket).write_all(&http::status_response("400 Bad Request", &why));
            http::linger_close(&socket);
            return;
        }
        Err(HeadError::TimedOut) => {
            info!("conn {id}: dropped: no complete request within the handshake timeout");
            return;
        }
        Err(e) => {
            debug!("conn {id}: no request: {e:?}");
            return;
        }
    };
    // Until the writer thread starts, this thread is the socket's only user,
    // so it may write the HTTP response itself.
    // The operator's endpoints, unless they are off or on their own address.
    if !config.no_admin
        && config.admin_listen.is_none()
        && let Some(request) = http::admin_route(&head)
    {
        answer_admin(id, &socket, &head, request, config, &services);
        return;
    }
    match http::route(&head, &config.allowed_origins) {
        Route::Respond(response) => {
            log_response(id, &head, &response, &services.metrics);
            respond(&socket, &response);
        }
        Route::Api(request) => {
            let owners = api::Owners {
                events: &services.events,
                store: services.store.as_ref(),
                signed: services.auth.is_some(),
            };
            let response = api::answer(request, &owners, config, head.method == "GET");
            log_response(id, &head, &response, &services.metrics);
            respond(&socket, &response);
        }
        Route::Upgrade { room, response } => {
            let upgrade = upgrade::Upgrade {
                room,
                response,
                leftover,
            };
            let socket = Arc::new(socket);
            upgrade::chat(id, socket, upgrade, config, &services, &shutting_down);
        }
    }
}

/// Serves one request on `--admin-listen`: the operator's endpoints only.
pub fn serve_admin(
    socket: TcpStream,
    config: &Config,
    services: &Services,
    shutting_down: impl Fn() -> bool,
) {
    let deadline = Instant::now() + config.handshake_timeout;
    let Ok((head, _)) = http::read_request_head(&socket, deadline, &shutting_down) else {
        return;
    };
    match http::admin_route(&head) {
        Some(request) => answer_admin(0, &socket, &head, request, config, services),
        None => respond(
            &socket,
            &http::status_response(
                "404 Not Found",
                "this address serves only /metrics, /healthz, /readyz, /api/stats and /inside",
            ),
        ),
    }
}

/// Answers `/metrics`, `/healthz`, `/readyz`, `/api/stats` or `/inside`.
fn answer_admin(
    id: ConnId,
    socket: &TcpStream,
    head: &http::RequestHead,
    request: http::AdminRequest,
    config: &Config,
    services: &Services,
) {
    let context = admin::Context {
        config,
        metrics: &services.metrics,
        events: &services.events,
        store: services.store.as_ref(),
        connections: &*services.connections,
    };
    let response = admin::answer(request, &context, head.method == "GET");
    log_response(id, head, &response, &services.metrics);
    respond(socket, &response);
}

/// Writes a complete response and closes the connection.
pub(super) fn respond(socket: &TcpStream, response: &[u8]) {
    let _ = (&*socket).write_all(response);
    http::linger_close(socket);
}

/// One log line per answered request: refused handshakes at warn level,
/// and counted by status.
fn log_response(id: ConnId, head: &http::RequestHead, response: &[u8], metrics: &Metrics) {
    let status = String::from_utf8_lossy(&response[..response.len().min(40)])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if head.is_websocket_upgrade() {
        warn!("conn {id}: WebSocket handshake refused: {status}");
        metrics.handshake_refused(HandshakeStatus::from_response(response));
    } else {
        debug!("conn {id}: {} {}: {status}", head.method, head.path);
    }
}
