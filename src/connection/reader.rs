//! The read pump: the connection's own thread, reading frames until the
//! connection ends, and the one place that decides how it ends.
//!
//! ## How a reader and a writer share one socket
//!
//! A blocking read waits until the client says something, which may be never;
//! meanwhile broadcasts must still reach that client. So reading and writing
//! need a thread each. tungstenite's `WebSocket` cannot simply be shared
//! between two threads: both `read` and `send` take `&mut self`, and the read
//! side also writes (it answers pings with pongs and echoes close frames).
//!
//! The split used here: the reader owns the `WebSocket`, but over a stream
//! (`ReaderStream`) whose *read* half is the socket and whose *write* half
//! does not touch the socket at all: it pushes the bytes tungstenite wants to
//! send into the client's `Outbox`, the same queue the dispatcher's broadcasts
//! go through. The writer thread drains that queue, so it is the only thread
//! that ever writes to the socket, and a pong can never land in the middle of
//! a broadcast frame. Both threads use the same `Arc<TcpStream>` (`&TcpStream`
//! is `Read` and `Write`), so a connection costs one file descriptor.
//!
//! Each message is checked here, on the connection's own thread, before the
//! dispatcher sees it: the rate limit (`rate_limit.rs`), the JSON
//! (`protocol`), and a sign-in token (`session.rs`); the dispatcher gets only
//! valid requests and verified names.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Sender;
use log::{debug, info, warn};
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::Frame as WsFrame;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

#[cfg(feature = "fault-injection")]
use super::PANIC_TRIGGER;
use super::rate_limit::{RateLimiter, Verdict};
use super::session::{Refused, SignIn};
use crate::config::{Config, LOG_PAYLOAD_CHARS, MAX_CLOSE_REASON_BYTES, READ_BUFFER_BYTES};
use crate::dispatcher::Event;
use crate::ids::ConnId;
use crate::metrics::{CloseReason, MessageKind, Metrics};
use crate::net::is_timeout;
use crate::outbox::Outbox;
use crate::protocol::{self, Closing, Reason, Refusal, Request, TextLimits};

/// Sends `Disconnected` and finishes the writer's queue, however the reader
/// stops, including by panic.
pub(super) struct ReaderGuard<'a> {
    pub(super) id: ConnId,
    pub(super) events: &'a Sender<Event>,
    pub(super) outbox: &'a Outbox,
    pub(super) metrics: &'a Metrics,
    /// Why the connection ended, set as the read pump returns; a panic
    /// leaves `Other`. Counted here, once.
    pub(super) reason: Cell<CloseReason>,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        let reason = self.reason.get();
        self.metrics.closed(reason);
        let _ = self.events.send(Event::Disconnected {
            conn: self.id,
            reason,
        });
        self.outbox.finish();
    }
}

/// The stream under the reader's `WebSocket`: reads come from the socket,
/// writes (pongs, close frames) go to the writer's queue. See the module
/// comment.
struct ReaderStream {
    socket: Arc<TcpStream>,
    outbox: Outbox,
}

impl Read for ReaderStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.socket).read(buf)
    }
}

impl Write for ReaderStream {
    /// tungstenite hands over each frame it sends in one `write` call
    /// (its write buffer is configured to size 0), so each push is one whole
    /// frame, and a close frame can be told apart: it goes last.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if protocol::is_close_frame(buf) {
            self.outbox.close(Bytes::copy_from_slice(buf));
        } else {
            self.outbox
                .push(Bytes::copy_from_slice(buf))
                .map_err(|_| io::Error::other("outbound queue full"))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How the read pump ends.
enum Ending {
    /// The connection is over; nothing more to send.
    Closed,
    /// The server closes it, for this reason.
    Close(Closing),
}

/// Reads the connection's frames until it ends. `sign_in` is the socket's
/// sign-in (`session.rs`) when sign-in is on: logins must then carry a
/// token that opens the socket's room.
pub(super) fn read_pump(
    guard: &ReaderGuard,
    socket: Arc<TcpStream>,
    leftover: Vec<u8>,
    config: &Config,
    mut sign_in: Option<SignIn>,
    shutting_down: &dyn Fn() -> bool,
) {
    let id = guard.id;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
        .accept_unmasked_frames(false);
    // The read timeout is the ping interval: a read that times out means the
    // client has been quiet that long, so it is pinged; once the silence
    // reaches the idle timeout (checked at each such wake-up, so within one
    // ping interval of it) the client is dropped. No timer thread needed.
    if let Err(e) = socket.set_read_timeout(Some(config.ping_interval)) {
        debug!("conn {id}: cannot set read timeout: {e}");
        return;
    }
    let stream = ReaderStream {
        socket: socket.clone(),
        outbox: guard.outbox.clone(),
    };
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(ws_config));
    let limits = TextLimits {
        max_chat_chars: config.max_chat_chars,
        tokens: sign_in.is_some(),
    };
    let mut limiter = RateLimiter::new(config.rate_limit);
    let mut last_heard = Instant::now();
    let mut read_timeout = config.ping_interval;

    let ending = loop {
        // A signed-in session ends with its token: wake up for that too.
        if let Some(session) = &sign_in {
            let now = Instant::now();
            if session.expired(now) {
                info!("conn {id}: closed: token expired");
                break Ending::Close(Closing::TokenExpired);
            }
            let wanted = session.read_timeout(config.ping_interval, now);
            if wanted != read_timeout && socket.set_read_timeout(Some(wanted)).is_ok() {
                read_timeout = wanted;
            }
        }
        let message = match ws.read() {
            Ok(message) => message,
            Err(WsError::Io(e)) if is_timeout(&e) => {
                let silence = last_heard.elapsed();
                if silence >= config.idle_timeout {
                    info!("conn {id}: dropped: silent for {silence:?}");
                    break Ending::Close(Closing::Idle);
                }
                if silence < config.ping_interval {
                    continue; // woken early, for the session's end
                }
                // Quiet, maybe dead: a live client answers a ping.
                let ping = protocol::encode(WsFrame::ping(Vec::new()));
                if guard.outbox.push(ping).is_err() {
                    break Ending::Closed;
                }
                continue;
            }
            Err(e) => break ending_for(id, e),
        };
        last_heard = Instant::now();
        match message {
            Message::Text(text) => {
                match limiter.check(Instant::now()) {
                    Verdict::Allow => {}
                    Verdict::Refuse => {
                        warn!("conn {id}: message dropped: rate limit");
                        let kind = protocol::request_kind(&text);
                        guard.metrics.received(MessageKind::of(kind));
                        let refusal = Refusal::new(
                            kind,
                            Reason::RateLimit,
                            format!(
                                "at most {} messages per second; this one was dropped",
                                config.rate_limit
                            ),
                        );
                        guard.metrics.refused(refusal.reason);
                        if guard.outbox.push(refusal.to_frame()).is_err() {
                            break Ending::Closed;
                        }
                        continue;
                    }
                    Verdict::Expel => {
                        warn!("conn {id}: closed: kept exceeding the rate limit");
                        break Ending::Close(Closing::RateLimit);
                    }
                }
                match handle_text(guard, &text, limits, sign_in.as_mut(), &mut limiter) {
                    Next::Go => {}
                    Next::Stop => break Ending::Closed,
                    Next::Close(closing) => break Ending::Close(closing),
                }
            }
            Message::Binary(_) => {
                warn!("conn {id}: binary message refused");
                let refusal = Refusal::new(None, Reason::Binary, "send JSON in text messages");
                guard.metrics.received(MessageKind::Other);
                guard.metrics.refused(refusal.reason);
                if guard.outbox.push(refusal.to_frame()).is_err() {
                    break Ending::Closed;
                }
            }
            // tungstenite queues the pong (through `ReaderStream`) and the
            // reply to a close by itself; the next `read` flushes them.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(frame) => debug!("conn {id}: client closed: {frame:?}"),
        }
    };

    guard.reason.set(match &ending {
        Ending::Close(closing) => closing.counted_as(),
        Ending::Closed if shutting_down() => CloseReason::Shutdown,
        Ending::Closed => CloseReason::ClientClose,
    });
    if let Ending::Close(closing) = ending {
        let reason = closing.reason();
        let frame = CloseFrame {
            code: closing.code(),
            reason: Utf8Bytes::from(protocol::truncate_bytes(&reason, MAX_CLOSE_REASON_BYTES)),
        };
        // Queues the close frame; the guard then finishes the writer's queue,
        // so it is written before the socket closes.
        let _ = ws.close(Some(frame));
    }
}

/// What the read pump does after a message.
enum Next {
    Go,
    /// The client has to go (its queue is full, or the dispatcher is gone).
    Stop,
    /// Close the connection, for this reason.
    Close(Closing),
}

/// Parses one text message and passes it on; a token login is checked here
/// first (`session.rs`), so the dispatcher gets only verified names.
fn handle_text(
    guard: &ReaderGuard,
    text: &str,
    limits: TextLimits,
    sign_in: Option<&mut SignIn>,
    limiter: &mut RateLimiter,
) -> Next {
    let id = guard.id;
    debug!("conn {id}: received {}", loggable(text));
    #[cfg(feature = "fault-injection")]
    if text.contains(PANIC_TRIGGER) {
        panic!("conn {id}: fault injection: reader panic requested");
    }
    let parsed = protocol::parse_request(text, limits);
    guard.metrics.received(MessageKind::of(match &parsed {
        Ok(request) => Some(request.kind()),
        Err(refusal) => refusal.request,
    }));
    let checked = match (parsed, sign_in) {
        (Ok(Request::TokenLogin { token, since }), Some(session)) => {
            session.check(id, &token, since).map(Request::Login)
        }
        // A login the parser refused for want of a token counts as a
        // failed sign-in too.
        (Err(refusal), Some(session)) if refusal.reason == Reason::AuthenticationFailed => {
            session.refuse(id, &refusal.details).map(Request::Login)
        }
        (Err(refusal), _) => {
            warn!(
                "conn {id}: refused ({}: {}): {}",
                refusal.reason.text(),
                refusal.details,
                loggable(text)
            );
            Err(Refused::TryAgain(refusal))
        }
        (Ok(request), _) => Ok(request),
    };
    match checked {
        Ok(request) => match guard.events.send(Event::Request { conn: id, request }) {
            Ok(()) => Next::Go,
            Err(_) => Next::Stop,
        },
        Err(Refused::TryAgain(refusal)) => {
            guard.metrics.refused(refusal.reason);
            if refusal.reason == Reason::AuthenticationFailed {
                // Each failed sign-in costs a token of the rate limit too.
                let _ = limiter.check(Instant::now());
            }
            match guard.outbox.push(refusal.to_frame()) {
                Ok(()) => Next::Go,
                Err(_) => Next::Stop,
            }
        }
        Err(Refused::Close) => Next::Close(Closing::SignInFailures),
    }
}

/// A client's message as it may appear in the log: cut short, and never a
/// token (a message that mentions one is not quoted at all).
fn loggable(text: &str) -> &str {
    if text.contains("token") {
        "(a message with a token; not shown)"
    } else {
        protocol::truncate(text, LOG_PAYLOAD_CHARS)
    }
}

/// Maps a tungstenite error to the way the connection ends.
fn ending_for(id: ConnId, error: WsError) -> Ending {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ending::Closed,
        // A closed tab or a killed process: the socket just ends.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            debug!("conn {id}: closed without a close frame");
            Ending::Closed
        }
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            warn!("conn {id}: closed: message of {size} bytes, limit {max_size}");
            Ending::Close(Closing::TooBig { limit: max_size })
        }
        WsError::Utf8(_) => {
            warn!("conn {id}: closed: text message is not valid UTF-8");
            Ending::Close(Closing::NotUtf8)
        }
        WsError::Protocol(e) => {
            warn!("conn {id}: closed: WebSocket protocol error: {e}");
            Ending::Close(Closing::Protocol(e.to_string()))
        }
        WsError::Io(e) => {
            debug!("conn {id}: read failed: {e}");
            Ending::Closed
        }
        other => {
            warn!("conn {id}: closed: {other}");
            Ending::Close(Closing::Internal)
        }
    }
}
