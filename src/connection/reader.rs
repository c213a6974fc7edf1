//! The read pump: the connection's own thread, reading frames until the
//! connection ends, and the one place that decides how it ends.
//!
//! ## How a reader and a writer share one socket
//!
//! A blocking read waits until the client says something, which may be never;
//! meanwhile broadcasts must still reach that client. So this thread never
//! writes the socket itself while it reads: frames reach it written in place
//! by whoever sends them, or by a writer thread while the client is behind
//! (`outbox/turn.rs`). tungstenite's `WebSocket` cannot simply be shared
//! between two threads: both `read` and `send` take `&mut self`, and the read
//! side also writes (it answers pings with pongs and echoes close frames).
//!
//! The split used here: the reader owns the `WebSocket`, but over a stream
//! (`ReaderStream`, `stream.rs`) whose *read* half is the socket and whose
//! *write* half does not touch the socket at all: it pushes the bytes
//! tungstenite wants to send into the client's `Outbox`, the same queue the
//! dispatcher's broadcasts go through. Whoever holds the socket's turn then
//! writes it, one at a time, so a pong can never land in the middle of a
//! broadcast frame. Everyone uses the same `Arc<TcpStream>` (`&TcpStream`
//! is `Read` and `Write`), so a connection costs one file descriptor.
//!
//! Each message is checked on this thread before the dispatcher sees it
//! (`messages.rs`); however the pump ends, its guard says goodbye
//! (`guard.rs`).
//!
//! On the `--conformance-echo` path (`Purpose::Echo`, see `upgrade.rs`) the
//! same pump, with the same limits, sends each message back instead: as a
//! frame encoded here and pushed into the connection's own outbox, which
//! its writer writes like any other, so the conformance suite tests the
//! path every chat takes.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::Frame as WsFrame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use super::guard::ReaderGuard;
use super::idle::{self, Woken};
use super::messages::{Next, echo, handle_text, rate_limit, reply};
use super::rate_limit::RateLimiter;
use super::session::SignIn;
use super::stream::ReaderStream;
use crate::auth::AuthConfig;
use crate::config::{
    CLOSE_REPLY_BYTES, CLOSE_REPLY_WAIT, Config, ECHO_STOP_POLL, MAX_CLOSE_REASON_BYTES,
    MIN_READ_WAKE, QUIET_AFTER, READ_BUFFER_BYTES,
};
use crate::ids::ConnId;
use crate::metrics::{CloseReason, MessageKind};
use crate::net::{Stream, is_timeout};
use crate::protocol::{self, Closing, Reason, Refusal, TextLimits};

/// What a connection's messages are for.
#[derive(Clone, Copy)]
pub(super) enum Purpose<'a> {
    /// The chat in `room`: each message is a request for the dispatcher;
    /// `auth` is the sign-in check, when sign-in is on.
    Chat {
        auth: Option<&'a AuthConfig>,
        room: &'a str,
    },
    /// The conformance echo: each message goes back to its sender.
    Echo,
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
    socket: Arc<Stream>,
    leftover: Vec<u8>,
    config: &Config,
    purpose: Purpose,
    shutting_down: &dyn Fn() -> bool,
) {
    let id = guard.id;
    let auth = match purpose {
        Purpose::Chat { auth, room } => auth.map(|auth| (auth, room)),
        Purpose::Echo => None,
    };
    // The reader wakes at least once a ping interval: a client quiet that
    // long is pinged; once the silence reaches the idle timeout (checked at
    // each wake-up, so within one ping interval of it) the client is
    // dropped. A deadline that comes sooner (the token's end, the login's)
    // shortens the wait to it. No timer thread needed. An echo wakes more
    // often, to see for itself that the server stops. While the client is
    // busy the reader waits in `read`, whose timeout is also at most
    // `QUIET_AFTER`: a client silent that long is waited for near the top
    // of the stack instead (`idle.rs`).
    let wake_at_least = match purpose {
        Purpose::Chat { .. } => config.ping_interval,
        Purpose::Echo => config.ping_interval.min(ECHO_STOP_POLL),
    };
    let mut read_timeout = wake_at_least.min(QUIET_AFTER);
    if let Err(e) = socket.set_read_timeout(Some(read_timeout)) {
        debug!("conn {id}: cannot set read timeout: {e}");
        return;
    }
    let stream = ReaderStream {
        socket: socket.clone(),
        outbox: guard.outbox.clone(),
    };
    let mut ws = websocket(stream, leftover, config);
    let limits = TextLimits {
        max_chat_chars: config.max_chat_chars,
        tokens: auth.is_some(),
    };
    let mut limiter = RateLimiter::new(config.rate_limit);
    let mut last_heard = Instant::now();
    // The last ping sent, so that a reader woken early pings once per
    // interval of silence, not at every wake-up.
    let mut last_ping: Option<Instant> = None;
    // With sign-in on, logins carry a token that must open this room.
    let mut sign_in = auth.map(|(auth, room)| SignIn::new(auth, config.jwt_leeway, room));
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
        let read = if now.saturating_duration_since(last_heard) >= QUIET_AFTER {
            // Quiet: wait near the top of the stack until the client
            // speaks, or until the next ping is due (`idle.rs`).
            let ping_due =
                last_ping.map_or(last_heard, |at| at.max(last_heard)) + config.ping_interval;
            let deadlines = [session_end, login_deadline, Some(ping_due)];
            match idle::wait_readable(&socket, wake_in(wake_at_least, now, deadlines)) {
                Ok(Woken::Readable) => read_message(&mut ws),
                Ok(Woken::TimedOut) => Err(WsError::Io(io::ErrorKind::TimedOut.into())),
                Err(e) => Err(WsError::Io(e)),
            }
        } else {
            // Busy: wait in `read`, but no longer than until the client
            // counts as quiet.
            let wanted =
                wake_in(wake_at_least, now, [session_end, login_deadline]).min(QUIET_AFTER);
            if wanted != read_timeout && socket.set_read_timeout(Some(wanted)).is_ok() {
                read_timeout = wanted;
            }
            read_message(&mut ws)
        };
        let message = match read {
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
        let next = act_on(
            message,
            purpose,
            guard,
            &mut limiter,
            sign_in.as_mut(),
            limits,
            config,
        );
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
        await_close_reply(&mut ws, &socket);
    }
}

/// After the server's close frame, reads on until the client answers with
/// its own or the socket ends, within `CLOSE_REPLY_WAIT` and
/// `CLOSE_REPLY_BYTES`; whatever else comes is dropped unhandled. The
/// closing handshake of RFC 6455 (7.1.1), and the reason it matters: a
/// socket closed while the client is still sending (a flooder, say) is
/// reset by the kernel, and the reset can destroy the close frame, with
/// its code and reason, before the client reads it.
fn await_close_reply(ws: &mut WebSocket<ReaderStream>, socket: &Stream) {
    let deadline = Instant::now() + CLOSE_REPLY_WAIT;
    let mut dropped = 0;
    while dropped <= CLOSE_REPLY_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || socket
                .set_read_timeout(Some(left.max(MIN_READ_WAKE)))
                .is_err()
        {
            return;
        }
        match ws.read() {
            Ok(message) => dropped += message.len(),
            Err(_) => return, // the client's close came (or the socket ended)
        }
    }
}

/// What the reader does with one message. Never inlined: its locals (a
/// message's text, a refusal, an echo's frame) would otherwise widen the
/// read loop's frame, which every quiet reader keeps resident (`idle.rs`).
#[inline(never)]
fn act_on(
    message: Message,
    purpose: Purpose,
    guard: &ReaderGuard,
    limiter: &mut RateLimiter,
    sign_in: Option<&mut SignIn>,
    limits: TextLimits,
    config: &Config,
) -> Next {
    let id = guard.id;
    match (message, purpose) {
        (Message::Text(text), Purpose::Chat { .. }) => {
            let kind = || protocol::request_kind(&text);
            match rate_limit(guard, limiter, kind, config) {
                Some(refused) => refused,
                None => handle_text(guard, &text, limits, sign_in, limiter),
            }
        }
        (Message::Text(text), Purpose::Echo) => rate_limit(guard, limiter, || None, config)
            .unwrap_or_else(|| echo(guard, protocol::text_frame(text.as_bytes()))),
        (Message::Binary(data), Purpose::Echo) => rate_limit(guard, limiter, || None, config)
            .unwrap_or_else(|| {
                let frame = WsFrame::message(data, OpCode::Data(Data::Binary), true);
                echo(guard, protocol::encode(frame))
            }),
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
    }
}

/// The connection's WebSocket, on the heap and built out of line: the read
/// loop's frame is part of what every quiet reader keeps resident
/// (`idle.rs`), and a `WebSocket` built in it would be its largest local.
#[inline(never)]
fn websocket(
    stream: ReaderStream,
    leftover: Vec<u8>,
    config: &Config,
) -> Box<WebSocket<ReaderStream>> {
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
        .accept_unmasked_frames(false);
    let ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(ws_config));
    Box::new(ws)
}

/// The next message, from tungstenite. Never inlined, for the reason
/// `act_on` is not: a frame being read is deep, a quiet reader is not.
#[inline(never)]
fn read_message(ws: &mut WebSocket<ReaderStream>) -> Result<Message, WsError> {
    ws.read()
}

/// How long the reader may block in `read`: `at_least_every` (the ping
/// interval), or less if one of `deadlines` comes sooner.
fn wake_in(
    at_least_every: Duration,
    now: Instant,
    deadlines: impl IntoIterator<Item = Option<Instant>>,
) -> Duration {
    deadlines
        .into_iter()
        .flatten()
        .map(|deadline| deadline.saturating_duration_since(now))
        .fold(at_least_every, Duration::min)
        .max(MIN_READ_WAKE)
}

/// Maps a tungstenite error to the way the connection ends. Never inlined,
/// for the reason `act_on` is not.
#[inline(never)]
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
}
