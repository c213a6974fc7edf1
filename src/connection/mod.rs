//! One socket's life, on its own thread: the front door, then for a
//! WebSocket the reader, its writer, and its goodbye.
//!
//! Each accepted socket gets its own thread, which reads the HTTP request,
//! answers it, and, for a WebSocket, stays on as the connection's *reader*.
//! Frames to the client are written in place by whoever sends them while
//! the client keeps up, and by a second thread, the *writer* (`writer.rs`),
//! only while it is behind (`outbox/turn.rs`).
//!
//! ```text
//! accept ── serve: with --tls-cert, the TLS handshake (net::Stream::accept_tls)
//!           read the request head (http::read_request_head)
//!             ├─ from a trusted proxy: the client it names, counted
//!             │  under its address ── or 429
//!             ├─ a page, an API or operator endpoint: answer it, close
//!             ├─ a WebSocket upgrade (upgrade.rs):
//!             │    the dispatcher admits it to its room ── or 503
//!             │    101 sent, outbox opened (a writer starts on a backlog)
//!             │    read pump (reader.rs) until the connection ends
//!             │    goodbye: Disconnected to the dispatcher, the last write
//!             │    waited for
//!             └─ with --conformance-echo, an upgrade on its path (upgrade.rs):
//!                  101 sent, outbox opened, read pump echoing every message;
//!                  the dispatcher never hears of it
//! ```
//!
//! The TLS handshake and the request head share one deadline
//! (`--handshake-timeout`). Over TLS the socket is a `net::Stream` whose
//! session the reader and the writer share (`net/stream.rs`).
//!
//! Until the outbox opens, this thread is the socket's only user, so it may
//! write HTTP responses itself; after, only the holder of the socket's turn
//! writes. Its writes are bounded by `--write-timeout` like the writer's, so a
//! client that asks for a large page and never reads it frees the thread.

mod guard;
mod idle;
mod messages;
pub mod rate_limit;
mod reader;
pub mod session;
mod stack;
mod stream;
mod upgrade;
pub mod writer;

use std::io::Write;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use log::{debug, info, warn};

use crate::archivist::Read;
use crate::auth::AuthConfig;
use crate::config::{Config, HANDSHAKE_POLL, HSTS_MAX_AGE_SECONDS};
use crate::dispatcher::Event;
use crate::http::{self, HeadError, Route, admin, api, moderation};
use crate::ids::ConnId;
use crate::metrics::{HandshakeStatus, Metrics};
use crate::net::{HandshakeFailure, Stream};
use crate::protocol::Turnaway;

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
    /// With `--tls-cert`: the TLS configuration this connection's handshake
    /// uses (the pair current when it was accepted).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--admin-token-file`: the moderation API's operator token.
    pub operator: Option<Arc<crate::auth::OperatorToken>>,
}

/// Counts a trusted proxy's connection under the client it names, or says
/// why not (its address is at its limit).
pub type CountClient<'a> = &'a mut dyn FnMut(IpAddr) -> Result<(), Turnaway>;

/// An accepted socket, as the accept loop hands it to its thread.
pub struct Accepted<'a> {
    pub conn: ConnId,
    pub socket: TcpStream,
    /// The socket's peer address.
    pub peer: IpAddr,
    /// `Some` when the peer is a trusted proxy (`--trusted-proxy`): the
    /// connection is counted under its client once the request names it.
    /// `None`: it was counted under `peer` at its accept.
    pub via_proxy: Option<CountClient<'a>>,
}

/// Serves one accepted socket from its HTTP request to its close.
pub fn serve(
    accepted: Accepted<'_>,
    config: &Config,
    services: Services,
    shutting_down: impl Fn() -> bool,
) {
    let Accepted {
        conn: id,
        socket,
        peer,
        via_proxy,
    } = accepted;
    let _alive = services.metrics.reader_alive();
    limit_writes(&socket, config);
    // The TLS handshake and the HTTP head share one deadline.
    let deadline = Instant::now() + config.handshake_timeout;
    let socket = match services.tls.clone() {
        None => Stream::Plain(socket),
        Some(tls) => {
            match Stream::accept_tls(socket, tls, deadline, HANDSHAKE_POLL, &shutting_down) {
                Ok(stream) => stream,
                Err(failure) => {
                    tls_failed(id, peer, &failure, &services.metrics);
                    return;
                }
            }
        }
    };
    let (head, leftover) = match http::read_request_head(&socket, deadline, &shutting_down) {
        Ok(request) => request,
        Err(HeadError::Malformed(why)) => {
            warn!("conn {id}: bad HTTP request from {peer}: {why}");
            respond(id, &socket, &http::status_response("400 Bad Request", &why));
            return;
        }
        Err(HeadError::TimedOut) => {
            info!(
                "conn {id}: dropped: no complete request from {peer} within the handshake timeout"
            );
            return;
        }
        Err(e) => {
            debug!("conn {id}: no request: {e:?}");
            return;
        }
    };
    let client = match via_proxy {
        None => peer,
        Some(count_client) => {
            let metrics = &services.metrics;
            match forwarded_client(id, &socket, &head, peer, count_client, config, metrics) {
                Some(client) => client,
                None => return,
            }
        }
    };
    // Until the outbox opens, this thread is the socket's only user,
    // so it may write the HTTP response itself.
    // The operator's endpoints, unless they are off or on their own address.
    if !config.no_admin
        && config.admin_listen.is_none()
        && let Some(request) = http::admin_route(&head)
    {
        answer_admin(id, client, &socket, &head, request, config, &services);
        return;
    }
    // With --hsts, every https answer tells the browser to use https only.
    let hsts = |response: Vec<u8>| match config.hsts && socket.is_tls() {
        true => http::with_header(response, "Strict-Transport-Security", &hsts_value()),
        false => response,
    };
    let echo = config.conformance_echo.as_deref();
    match http::route(&head, &config.allowed_origins, echo) {
        Route::Respond(response) => {
            let response = hsts(response);
            log_response(id, client, &head, &response, &services.metrics);
            respond(id, &socket, &response);
        }
        Route::Api(request) => {
            let owners = api::Owners {
                events: &services.events,
                store: services.store.as_ref(),
                auth: services.auth.as_deref(),
            };
            let credentials = http::Credentials::of(&head);
            let include_body = head.method == "GET";
            let answer = api::answer(request, &credentials, &owners, config, include_body);
            let response = hsts(answer);
            log_response(id, client, &head, &response, &services.metrics);
            respond(id, &socket, &response);
        }
        Route::Moderation(request) => {
            let gate = moderation::Gate {
                events: &services.events,
                store: services.store.as_ref(),
                auth: services.auth.as_deref(),
                operator: services.operator.as_deref(),
            };
            let answer = moderation::answer(request, &head, &socket, leftover, &gate, config);
            let response = hsts(answer);
            log_response(id, client, &head, &response, &services.metrics);
            respond(id, &socket, &response);
        }
        Route::Upgrade { room, response } => {
            // The request's headers are not needed for the connection's life.
            drop(head);
            let upgrade = upgrade::Upgrade {
                room,
                client,
                opening: upgrade::Opening { response, leftover },
            };
            let socket = Arc::new(socket);
            upgrade::chat(id, socket, upgrade, config, &services, &shutting_down);
        }
        Route::Echo { response } => {
            let opening = upgrade::Opening { response, leftover };
            upgrade::echo(
                id,
                Arc::new(socket),
                opening,
                config,
                &services,
                &shutting_down,
            );
        }
    }
}

/// `Strict-Transport-Security`'s value with `--hsts`.
fn hsts_value() -> String {
    format!("max-age={HSTS_MAX_AGE_SECONDS}")
}

/// Logs a TLS handshake that did not complete (counted by reason).
fn tls_failed(id: ConnId, peer: IpAddr, failure: &HandshakeFailure, metrics: &Metrics) {
    match failure {
        HandshakeFailure::TimedOut => {
            info!("conn {id}: dropped: no TLS handshake from {peer} within the handshake timeout")
        }
        HandshakeFailure::NotTls => info!("conn {id}: dropped: {peer} does not speak TLS"),
        HandshakeFailure::Refused(e) => info!("conn {id}: TLS handshake with {peer} failed: {e}"),
        HandshakeFailure::Closed | HandshakeFailure::ShuttingDown => {
            debug!("conn {id}: no TLS handshake: {failure:?}")
        }
        HandshakeFailure::Io(e) => debug!("conn {id}: TLS handshake with {peer}: {e}"),
    }
    metrics.tls_handshake_failed(failure);
}

/// Behind a trusted proxy the client is who the proxy says, and from here
/// on it is counted under its own address; `None` (answered 429) if that
/// address is at its limit.
fn forwarded_client(
    id: ConnId,
    socket: &Stream,
    head: &http::RequestHead,
    proxy: IpAddr,
    count_client: CountClient<'_>,
    config: &Config,
    metrics: &Metrics,
) -> Option<IpAddr> {
    let client = http::client_address(head, proxy, &config.trusted_proxies);
    let Err(turnaway) = count_client(client) else {
        return Some(client);
    };
    let limit = config.max_connections_per_ip;
    warn!("conn {id}: from {client} (via {proxy}) refused: {limit} open from that address");
    let answer = http::status_response(turnaway.status(), &turnaway.text());
    metrics.handshake_refused(HandshakeStatus::from_response(&answer));
    respond(id, socket, &answer);
    None
}

/// Serves one request on `--admin-listen`: the operator's endpoints only.
pub fn serve_admin(
    socket: TcpStream,
    config: &Config,
    services: &Services,
    shutting_down: impl Fn() -> bool,
) {
    limit_writes(&socket, config);
    let deadline = Instant::now() + config.handshake_timeout;
    let socket = Stream::Plain(socket);
    let Ok((head, _)) = http::read_request_head(&socket, deadline, &shutting_down) else {
        return;
    };
    let peer = socket.peer_ip().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match http::admin_route(&head) {
        Some(request) => answer_admin(0, peer, &socket, &head, request, config, services),
        None => respond(
            0,
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
    client: IpAddr,
    socket: &Stream,
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
    log_response(id, client, head, &response, &services.metrics);
    respond(id, socket, &response);
}

/// Bounds this thread's writes to the socket by `--write-timeout`: an
/// answer the client does not take in that long (each write blocked that
/// long with no byte taken) is given up, as the writer gives up a chat.
fn limit_writes(socket: &TcpStream, config: &Config) {
    if !config.write_timeout.is_zero() {
        let _ = socket.set_write_timeout(Some(config.write_timeout));
    }
}

/// Writes a complete response and closes the connection. A client that
/// does not take it within the write timeout is not waited for at all.
pub(super) fn respond(id: ConnId, socket: &Stream, response: &[u8]) {
    match (&*socket).write_all(response) {
        Ok(()) => http::linger_close_stream(socket),
        Err(e) => {
            if crate::net::is_timeout(&e) {
                info!("conn {id}: dropped: took none of its answer for the write timeout");
            } else {
                debug!("conn {id}: answer not sent: {e}");
            }
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// One log line per answered request: refused handshakes at warn level,
/// and counted by status.
fn log_response(
    id: ConnId,
    client: IpAddr,
    head: &http::RequestHead,
    response: &[u8],
    metrics: &Metrics,
) {
    let status = String::from_utf8_lossy(&response[..response.len().min(40)])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if head.is_websocket_upgrade() {
        warn!("conn {id}: WebSocket handshake from {client} refused: {status}");
        metrics.handshake_refused(HandshakeStatus::from_response(response));
    } else {
        debug!(
            "conn {id}: {} {}: {status}",
            head.method,
            head.loggable_path()
        );
    }
}
