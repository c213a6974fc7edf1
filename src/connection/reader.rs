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
//! (`ReaderStream`, `stream.rs`) whose *read* half is the socket and whose
//! *write* half does not touch the socket at all: it pushes the bytes
//! tungstenite wants to send into the client's `Outbox`, the same queue the
//! dispatcher's broadcasts go through. The writer thread drains that queue,
//! so it is the only thread that ever writes to the socket, and a pong can
//! never land in the middle of a broadcast frame. Both threads use the same `Arc<TcpStream>` (`&TcpStream`
//! is `Read` and `Write`), so a connection costs one file descriptor.
//!
//! Each message is checked here, on the connection's own thread, before the
//! dispatcher sees it: the rate limit (`rate_limit.rs`), the JSON
//! (`protocol`), and a sign-in token (`session.rs`); the dispatcher gets only
//! valid requests and verified names.
//!
//! On the `--conformance-echo` path (`Purpose::Echo`, see `upgrade.rs`) the
//! same pump, with the same limits, sends each message back instead: as a
//! frame encoded here and pushed into the connection's own outbox, which
//! its writer writes like any other, so the conformance suite tests the
//! path every chat takes.

use std::cell::Cell;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, info, warn};
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::Frame as WsFrame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

#[cfg(feature = "fault-injection")]
use super::PANIC_TRIGGER;
use super::rate_limit::{RateLimiter, Verdict};
use super::session::{Refused, SignIn};
use super::stream::ReaderStream;
use crate::auth::AuthConfig;
use crate::config::{
    Config, ECHO_STOP_POLL, LOG_PAYLOAD_CHARS, MAX_CLOSE_REASON_BYTES, MIN_READ_WAKE,
    READ_BUFFER_BYTES,
};
use crate::dispatcher::Event;
use crate::ids::ConnId;
use crate::metrics::{CloseReason, MessageKind, Metrics};
use crate::net::is_timeout;
use crate::outbox::Outbox;
use crate::protocol::{self, Closing, Frame, Reason, Refusal, Request, RequestKind, TextLimits};

/// What a connection's messages are for.
#[derive(Clone, Copy)]
pub(super) enum Purpose<'a> {
    /// The chat: each message is a request for the dispatcher; `auth` is
    /// the sign-in check, when sign-in is on.
    Chat { auth: Option<&'a AuthConfig> },
    /// The conformance echo: each message goes back to its sender.
    Echo,
}

/// Sends `Disconnected` and finishes the writer's queue, however the reader
/// stops, including by panic.
pub(super) struct ReaderGuard<'a> {
    pub(super) id: ConnId,
    /// The dispatcher, which knows the connection; `None` for an echo,
    /// which it never knew.
    pub(super) events: Option<&'a Sender<Event>>,
    pub(super) outbox: &'a Outbox,
    pub(super) metrics: &'a Arc<Metrics>,
    /// Why the connection ended, set as the read pump returns; a panic
    /// leaves `Other`. Counted here, once.
    pub(super) reason: Cell<CloseReason>,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        let reason = self.reason.get();
        self.metrics.closed(reason);
        if let Some(events) = self.events {
            let _ = events.send(Event::Disconnected {
                conn: self.id,
                reason,
            });
        }
        self.outbox.finish();
    }
}

/// How the read pump ends.
enum Ending {
    /// The connection is over; nothing more to send.
    Closed,
    /// The server closes it, for this reason.
    Close(Closing),
}

pub(super) fn read_pump(
    guard: &ReaderGuard,
    socket: Arc<TcpStream>,
    leftover: Vec<u8>,
    config: &Config,
    purpose: Purpose,
    shutting_down: &dyn Fn() -> bool,
) {
    let id = guard.id;
    let auth = match purpose {
        Purpose::Chat { auth } => auth,
        Purpose::Echo => None,
    };
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
        .accept_unmasked_frames(false);
    // The read timeout is the ping interval: a read that times out means the
    // client has been quiet that long, so it is pinged; once the silence
    // reaches the idle timeout (checked at each such wake-up, so within one
    // ping interval of it) the client is dropped. A deadline that comes
    // sooner (the token's end, the login's) shortens the wait to it. No
    // timer thread needed. An echo wakes more often, to see for itself that
    // the server stops.
    let wake_at_least = match purpose {
        Purpose::Chat { .. } => config.ping_interval,
        Purpose::Echo => config.ping_interval.min(ECHO_STOP_POLL),
    };
    let mut read_timeout = wake_at_least;
    if let Err(e) = socket.set_read_timeout(Some(read_timeout)) {
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
        tokens: auth.is_some(),
    };
    let mut limiter = RateLimiter::new(config.rate_limit);
    let mut last_heard = Instant::now();
    // The last ping sent, so that a reader woken early pings once per
    // interval of silence, not at every wake-up.
    let mut last_ping: Option<Instant> = None;
    let mut sign_in = auth.map(|auth| SignIn::new(auth, config.jwt_leeway));
    // Not logged in by then, a chat connection is closed (`--login-timeout`);
    // an echo never logs in.
    let login_timeout = config.login_timeout;
    let mut login_deadline = match purpose {
        Purpose::Chat { .. } if !login_timeout.is_zero() => Some(Instant::now() + login_timeout),
        _ => None,
    };

    let ending = loop {
        let now = Instant::now();
        // A signed-in session ends with its token.
        if sign_in.as_ref().is_some_and(|session| session.expired(now)) {
            info!("conn {id}: closed: token expired");
            break Ending::Close(Closing::TokenExpired);
        }
        // Only the dispatcher knows whether a login was admitted; it says
        // so on the outbox, and from then on there is no deadline.
        if login_deadline.is_some() && guard.outbox.has_logged_in() {
            login_deadline = None;
        }
        if login_deadline.is_some_and(|deadline| now >= deadline) {
            info!("conn {id}: closed: not logged in within {login_timeout:?}");
            break Ending::Close(Closing::LoginTimeout);
        }
        // Wake up for the session's end and the login deadline too.
        let session_end = sign_in.as_ref().and_then(SignIn::ends);
        let wanted = wake_in(wake_at_least, now, [session_end, login_deadline]);
        if wanted != read_timeout && socket.set_read_timeout(Some(wanted)).is_ok() {
            read_timeout = wanted;
        }
        let message = match ws.read() {
            Ok(message) => message,
            Err(WsError::Io(e)) if is_timeout(&e) => {
                if matches!(purpose, Purpose::Echo) && shutting_down() {
                    break Ending::Close(Closing::ShuttingDown);
                }
                let silence = last_heard.elapsed();
                if silence >= config.idle_timeout {
                    info!("conn {id}: dropped: silent for {silence:?}");
                    break Ending::Close(Closing::Idle);
                }
                let since_ping = last_ping.map_or(Duration::MAX, |at| at.elapsed());
                if silence.min(since_ping) < config.ping_interval {
                    continue; // woken early, for a deadline or to look at the server
                }
                // Quiet, maybe dead: a live client answers a ping.
                let ping = protocol::encode(WsFrame::ping(Vec::new()));
                if guard.outbox.push(ping).is_err() {
                    break Ending::Closed;
                }
                last_ping = Some(Instant::now());
                continue;
            }
            Err(e) => break ending_for(id, e),
        };
        last_heard = Instant::now();
        let next = match (message, purpose) {
            (Message::Text(text), Purpose::Chat { .. }) => {
                let kind = || protocol::request_kind(&text);
                match rate_limit(guard, &mut limiter, kind, config) {
                    Some(refused) => refused,
                    None => handle_text(guard, &text, limits, sign_in.as_mut(), &mut limiter),
                }
            }
            (Message::Text(text), Purpose::Echo) => {
                rate_limit(guard, &mut limiter, || None, config)
                    .unwrap_or_else(|| echo(guard, protocol::text_frame(text.as_bytes())))
            }
            (Message::Binary(data), Purpose::Echo) => {
                rate_limit(guard, &mut limiter, || None, config).unwrap_or_else(|| {
                    let frame = WsFrame::message(data, OpCode::Data(Data::Binary), true);
                    echo(guard, protocol::encode(frame))
                })
            }
            (Message::Binary(_), Purpose::Chat { .. }) => {
                warn!("conn {id}: binary message refused");
                let refusal = Refusal::new(None, Reason::Binary, "send JSON in text messages");
                guard.metrics.received(MessageKind::Other);
                guard.metrics.refused(refusal.reason);
                reply(guard, refusal)
            }
            // tungstenite queues the pong (through `ReaderStream`) and the
            // reply to a close by itself; the next `read` flushes them.
            (Message::Ping(_) | Message::Pong(_) | Message::Frame(_), _) => Next::Go,
            (Message::Close(frame), _) => {
                debug!("conn {id}: client closed: {frame:?}");
                Next::Go
            }
        };
        match next {
            Next::Go => {}
            Next::Stop => break Ending::Closed,
            Next::Close(closing) => break Ending::Close(closing),
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

/// How long the reader may block in `read`: `at_least_every` (the ping
/// interval), or less if one of `deadlines` comes sooner.
fn wake_in(at_least_every: Duration, now: Instant, deadlines: [Option<Instant>; 2]) -> Duration {
    deadlines
        .into_iter()
        .flatten()
        .map(|deadline| deadline.saturating_duration_since(now))
        .fold(at_least_every, Duration::min)
        .max(MIN_READ_WAKE)
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
        Ok(request) => match guard
            .events
            .map(|e| e.send(Event::Request { conn: id, request }))
        {
            Some(Ok(())) => Next::Go,
            Some(Err(_)) | None => Next::Stop,
        },
        Err(Refused::TryAgain(refusal)) => {
            guard.metrics.refused(refusal.reason);
            if refusal.reason == Reason::AuthenticationFailed {
                // Each failed sign-in costs a token of the rate limit too.
                let _ = limiter.check(Instant::now());
            }
            reply(guard, refusal)
        }
        Err(Refused::Close) => Next::Close(Closing::SignInFailures),
    }
}

/// Applies the rate limit to one message: `None` lets it through; else
/// what the pump does after refusing it. `kind` reads what the message
/// asked for, for the refusal and its count: only when it is refused, so
/// that an allowed message is parsed once.
fn rate_limit(
    guard: &ReaderGuard,
    limiter: &mut RateLimiter,
    kind: impl FnOnce() -> Option<RequestKind>,
    config: &Config,
) -> Option<Next> {
    match limiter.check(Instant::now()) {
        Verdict::Allow => None,
        Verdict::Refuse => {
            warn!("conn {}: message dropped: rate limit", guard.id);
            let kind = kind();
            guard.metrics.received(MessageKind::of(kind));
            let details = format!(
                "at most {} messages per second; this one was dropped",
                config.rate_limit
            );
            let refusal = Refusal::new(kind, Reason::RateLimit, details);
            guard.metrics.refused(refusal.reason);
            Some(reply(guard, refusal))
        }
        Verdict::Expel => {
            warn!("conn {}: closed: kept exceeding the rate limit", guard.id);
            Some(Next::Close(Closing::RateLimit))
        }
    }
}

/// Sends a refusal to the client; a full queue means it must go.
fn reply(guard: &ReaderGuard, refusal: Refusal) -> Next {
    match guard.outbox.push(refusal.to_frame()) {
        Ok(()) => Next::Go,
        Err(_) => Next::Stop,
    }
}

/// Sends a message back to its sender, on the `--conformance-echo` path:
/// into its own outbox, for its writer, like every frame it is sent.
fn echo(guard: &ReaderGuard, frame: Frame) -> Next {
    match guard.outbox.push(frame) {
        Ok(()) => Next::Go,
        Err(_) => {
            warn!("conn {}: closed: echo queue full", guard.id);
            Next::Close(Closing::TooSlow)
        }
    }
}

/// A client's message as it may appear in the log: cut short, and never a
/// token. A message that could carry one is not quoted at all: one that
/// names a token in any case (`"Token"`), one with a `\u` escape (which can
/// spell the word), and one with what looks like a JWT (`eyJ`, the start of
/// a base64url JSON header), whatever its field is called.
fn loggable(text: &str) -> &str {
    let could_hold_a_token =
        text.to_ascii_lowercase().contains("token") || text.contains("\\u") || text.contains("eyJ");
    if could_hold_a_token {
        "(a message that could hold a token; not shown)"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_wakes_for_the_soonest_deadline_but_never_busily() {
        let now = Instant::now();
        let ping = Duration::from_secs(30);
        assert_eq!(wake_in(ping, now, [None, None]), ping);
        let soon = Some(now + Duration::from_secs(5));
        let later = Some(now + Duration::from_secs(20));
        assert_eq!(wake_in(ping, now, [later, soon]), Duration::from_secs(5));
        assert_eq!(wake_in(ping, now, [Some(now + ping * 2), None]), ping);
        // A deadline already past still leaves the OS a timeout it accepts.
        assert_eq!(wake_in(ping, now + ping, [soon, None]), MIN_READ_WAKE);
    }

    #[test]
    fn no_spelling_of_a_token_is_quoted_in_the_log() {
        for text in [
            r#"{"type":"login","token":"abc"}"#,
            r#"{"type":"login","TOKEN":"abc"}"#,
            r#"{"type":"login","\u0074oken":"abc"}"#,
            r#"{"type":"login","jwt":"eyJhbGciOiJIUzI1NiJ9.e30.sig"}"#,
        ] {
            assert!(loggable(text).contains("not shown"), "{text}");
        }
        let chat = r#"{"type":"chat","text":"hello"}"#;
        assert_eq!(loggable(chat), chat);
    }
}
