//! One client connection: its handshake, and its read pump.
//!
//! Each accepted socket gets its own thread, which reads the HTTP request,
//! answers it, and, for a WebSocket, stays on as the connection's *reader*
//! and starts a second thread, the *writer* (`writer.rs`).
//!
//! ## Why a reader and a writer, and how they share one socket
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
//! ## Why every exit path sends `Disconnected`
//!
//! The dispatcher must hear about every connection that ends, or a vanished
//! user would stay in everyone's list. `ReaderGuard` sends the event from its
//! `Drop`, so it is sent on a clean close, on an error and on a panic alike.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Sender;
use log::{debug, info, warn};
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::Frame as WsFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use crate::api;
use crate::config::{
    ADMISSION_TIMEOUT, Config, LOG_PAYLOAD_CHARS, READ_BUFFER_BYTES, WRITER_STACK_BYTES,
};
use crate::dispatcher::{ConnId, Event};
use crate::http::{self, HeadError, Route};
use crate::outbox::{self, Outbox};
use crate::protocol::{self, Refusal, TextLimits};
use crate::rate_limit::{RateLimiter, Verdict};
use crate::writer;

/// A chat text that makes the reader panic, in builds with the
/// `fault-injection` feature; tests use it to show that one connection's
/// panic harms nobody else.
#[cfg(feature = "fault-injection")]
pub const PANIC_TRIGGER: &str = "__threadchat_fault_injection_panic__";

/// Serves one accepted socket from its HTTP request to its close.
pub fn serve(
    id: ConnId,
    socket: TcpStream,
    config: &Config,
    events: Sender<Event>,
    shutting_down: impl Fn() -> bool,
) {
    let deadline = Instant::now() + config.handshake_timeout;
    let (head, leftover) = match http::read_request_head(&socket, deadline, shutting_down) {
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
    match http::route(&head, &config.allowed_origins) {
        Route::Respond(response) => {
            log_response(id, &head, &response);
            respond(&socket, &response);
        }
        Route::Api(request) => {
            let response = api::answer(request, &events, head.method == "GET");
            log_response(id, &head, &response);
            respond(&socket, &response);
        }
        Route::Upgrade { room, response } => {
            chat(
                id,
                Arc::new(socket),
                room,
                response,
                leftover,
                config,
                events,
            );
        }
    }
}

/// Writes a complete response and closes the connection.
fn respond(socket: &TcpStream, response: &[u8]) {
    let _ = (&*socket).write_all(response);
    http::linger_close(socket);
}

/// One log line per answered request: refused handshakes at warn level.
fn log_response(id: ConnId, head: &http::RequestHead, response: &[u8]) {
    let status = String::from_utf8_lossy(&response[..response.len().min(40)])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if head.is_websocket_upgrade() {
        warn!("conn {id}: WebSocket handshake refused: {status}");
    } else {
        debug!("conn {id}: {} {}: {status}", head.method, head.path);
    }
}

/// Runs a WebSocket connection: asks the dispatcher to admit it to `room`,
/// completes the handshake, starts its writer, then reads until the
/// connection ends.
fn chat(
    id: ConnId,
    socket: Arc<TcpStream>,
    room: String,
    handshake: Vec<u8>,
    leftover: Vec<u8>,
    config: &Config,
    events: Sender<Event>,
) {
    let _ = socket.set_nodelay(true);
    let (outbox, inbox) = outbox::outbox(
        socket.clone(),
        config.outbound_messages,
        config.outbound_bytes,
    );
    let (admitted, admission) = crossbeam_channel::bounded(1);
    let connected = Event::Connected {
        id,
        room,
        outbox: outbox.clone(),
        admitted,
    };
    if events.send(connected).is_err() {
        return;
    }
    // From here on the dispatcher may know this connection, so every way out
    // must tell it: the guard does, on drop.
    let guard = ReaderGuard {
        id,
        events: &events,
        outbox: &outbox,
    };
    let refusal = match admission.recv_timeout(ADMISSION_TIMEOUT) {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(_) => Some("the server is too busy; try again later".to_string()),
    };
    if let Some(why) = refusal {
        warn!("conn {id}: WebSocket handshake refused: 503: {why}");
        respond(
            &socket,
            &http::status_response("503 Service Unavailable", &why),
        );
        return;
    }
    if let Err(e) = (&*socket).write_all(&handshake) {
        debug!("conn {id}: handshake write failed: {e}");
        return;
    }
    let (write_timeout, write_batch) = (config.write_timeout, config.write_batch);
    let writer = thread::Builder::new()
        .name(format!("writer-{id}"))
        .stack_size(WRITER_STACK_BYTES)
        .spawn(move || writer::run(id, inbox, write_timeout, write_batch));
    let writer = match writer {
        Ok(handle) => handle,
        Err(e) => {
            warn!("conn {id}: cannot start writer thread: {e}");
            return;
        }
    };
    debug!("conn {id}: WebSocket open");
    read_pump(&guard, socket, leftover, config);
    // The guard tells the dispatcher and the writer; then wait for the
    // writer so the connection's threads are all gone when this one ends.
    drop(guard);
    let _ = writer.join();
    debug!("conn {id}: closed");
}

/// Sends `Disconnected` and finishes the writer's queue, however the reader
/// stops, including by panic.
struct ReaderGuard<'a> {
    id: ConnId,
    events: &'a Sender<Event>,
    outbox: &'a Outbox,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Disconnected { id: self.id });
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
    /// Close it with this code and reason.
    Close(CloseCode, String),
}

fn read_pump(guard: &ReaderGuard, socket: Arc<TcpStream>, leftover: Vec<u8>, config: &Config) {
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
        socket,
        outbox: guard.outbox.clone(),
    };
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(ws_config));
    let limits = TextLimits {
        max_chat_chars: config.max_chat_chars,
    };
    let mut limiter = RateLimiter::new(config.rate_limit);
    let mut last_heard = Instant::now();

    let ending = loop {
        let message = match ws.read() {
            Ok(message) => message,
            Err(WsError::Io(e)) if writer::is_timeout(&e) => {
                let silence = last_heard.elapsed();
                if silence >= config.idle_timeout {
                    info!("conn {id}: dropped: silent for {silence:?}");
                    break Ending::Close(CloseCode::Away, "idle timeout".into());
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
                        let refusal = Refusal::new(
                            protocol::request_kind(&text),
                            "rate limit exceeded",
                            format!(
                                "at most {} messages per second; this one was dropped",
                                config.rate_limit
                            ),
                        );
                        if guard.outbox.push(refusal.to_frame()).is_err() {
                            break Ending::Closed;
                        }
                        continue;
                    }
                    Verdict::Expel => {
                        warn!("conn {id}: closed: kept exceeding the rate limit");
                        break Ending::Close(CloseCode::Policy, "rate limit exceeded".into());
                    }
                }
                if !handle_text(guard, &text, limits) {
                    break Ending::Closed;
                }
            }
            Message::Binary(_) => {
                warn!("conn {id}: binary message refused");
                let refusal = Refusal::new(
                    None,
                    "binary messages are not supported",
                    "send JSON in text messages",
                );
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

    if let Ending::Close(code, reason) = ending {
        // A close frame's payload is at most 125 bytes, 2 of them the code.
        let reason = protocol::truncate_bytes(&reason, 123);
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        // Queues the close frame; the guard then finishes the writer's queue,
        // so it is written before the socket closes.
        let _ = ws.close(Some(frame));
    }
}

/// Parses one text message and passes it on. Returns false if the client has
/// to go (its queue is full, or the dispatcher is gone).
fn handle_text(guard: &ReaderGuard, text: &str, limits: TextLimits) -> bool {
    let id = guard.id;
    debug!(
        "conn {id}: received {}",
        protocol::truncate(text, LOG_PAYLOAD_CHARS)
    );
    #[cfg(feature = "fault-injection")]
    if text.contains(PANIC_TRIGGER) {
        panic!("conn {id}: fault injection: reader panic requested");
    }
    match protocol::parse_request(text, limits) {
        Ok(request) => guard.events.send(Event::Request { id, request }).is_ok(),
        Err(refusal) => {
            warn!(
                "conn {id}: refused ({}: {}): {}",
                refusal.error,
                refusal.details,
                protocol::truncate(text, LOG_PAYLOAD_CHARS)
            );
            guard.outbox.push(refusal.to_frame()).is_ok()
        }
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
            Ending::Close(
                CloseCode::Size,
                format!("message too big: limit is {max_size} bytes"),
            )
        }
        WsError::Utf8(_) => {
            warn!("conn {id}: closed: text message is not valid UTF-8");
            Ending::Close(CloseCode::Invalid, "text message is not valid UTF-8".into())
        }
        WsError::Protocol(e) => {
            warn!("conn {id}: closed: WebSocket protocol error: {e}");
            Ending::Close(CloseCode::Protocol, e.to_string())
        }
        WsError::Io(e) => {
            debug!("conn {id}: read failed: {e}");
            Ending::Closed
        }
        other => {
            warn!("conn {id}: closed: {other}");
            Ending::Close(CloseCode::Error, "internal error".into())
        }
    }
}
