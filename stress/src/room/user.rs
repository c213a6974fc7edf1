//! The life of one simulated user: one OS thread, one blocking socket, as in
//! the course's clients. It connects, waits at the login gate, logs in,
//! waits at the chat gate, reads (and, for a sender, starts its writing
//! thread), reports its receipt, waits at the close gate and says goodbye.
//!
//! A "silent" user (the `slow` experiment) logs in and then never reads
//! again until the close gate, then reads what piled up to learn its fate.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;
use tungstenite::{Message, WebSocket};

use super::receipt::Receipt;
use super::sender::spawn_sender;
use super::{Event, Gates, PROGRESS_BATCH, Room, SilentFate, WINDOW_PUBLISH_EVERY};
use crate::client::{close, is_timeout, log_in, login_json, next_text};
use crate::measure::now_us;
use crate::net;
use crate::scan::{self, Notice};

/// Opens a user's connection and reports the outcome to the main thread.
fn connect(room: &Room, silent: bool, events: &Sender<Event>) -> Option<WebSocket<TcpStream>> {
    let opened = net::open(&room.plan.target, &room.sources, net::CHAT_READ_BUFFER);
    let outcome = opened.as_ref().map(|_| ()).map_err(Clone::clone);
    let _ = events.send(Event::Connected { silent, outcome });
    opened.ok()
}

/// The life of one reading user (a sender too if `index < senders`).
pub(super) fn user(room: &Arc<Room>, index: usize, gates: &Gates, events: &Sender<Event>) {
    let plan = &room.plan;
    let name = room.name(index);
    let Some(mut ws) = connect(room, false, events) else {
        return;
    };

    Gates::wait(&gates.login);
    let expected = room.expected_online.load(Ordering::Relaxed);
    match log_in(&mut ws, &name, expected, room.deadline()) {
        Ok((frames, bytes)) => {
            let _ = events.send(Event::Settled {
                user: index,
                at_us: now_us(),
                frames,
                bytes,
            });
        }
        Err(e) => {
            let _ = events.send(Event::LoginFailed(e));
            return;
        }
    }

    Gates::wait(&gates.chat);
    let sender = if index < plan.senders {
        match spawn_sender(room, index as u32, &ws) {
            Ok(handle) => Some(handle),
            Err(e) => {
                let mut receipt = Receipt::new(plan.senders, plan.messages);
                receipt.error(e);
                room.retire(index);
                let _ = events.send(Event::Chatted(Box::new(receipt)));
                return;
            }
        }
    } else {
        None
    };
    let mut receipt = receive(room, index, &mut ws);
    room.retire(index);
    if let Some(handle) = sender {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => receipt.error(format!("sender: {e}")),
            Err(_) => receipt.error("sender thread panicked".into()),
        }
    }
    let _ = events.send(Event::Chatted(Box::new(receipt)));

    Gates::wait(&gates.close);
    close(&mut ws, room.deadline());
}

/// Reads the chat phase's deliveries and accounts for each.
fn receive(room: &Room, index: usize, ws: &mut WebSocket<TcpStream>) -> Receipt {
    let plan = &room.plan;
    let mut receipt = Receipt::new(plan.senders, plan.messages);
    let expected = (plan.senders * plan.messages) as u64;
    let mut per_sender = vec![0u64; plan.senders];
    let mut unreported = 0;
    while receipt.distinct < expected {
        let message = match next_text(ws, room.deadline()) {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(e) => {
                receipt.error(e);
                break;
            }
        };
        let text = message.into_data();
        let now = now_us();
        if let Some(stamp) = scan::stamp(&text) {
            if receipt.record(stamp, now) {
                let sender = stamp.sender as usize;
                per_sender[sender] += 1;
                if per_sender[sender].is_multiple_of(WINDOW_PUBLISH_EVERY) {
                    room.publish(index, sender, per_sender[sender]);
                }
            }
            unreported += 1;
            if unreported == PROGRESS_BATCH {
                room.delivered.fetch_add(unreported, Ordering::Relaxed);
                unreported = 0;
            }
            continue;
        }
        let text = std::str::from_utf8(&text).unwrap_or_default();
        match scan::notice(text) {
            Notice::Left(who) if index == 0 => {
                room.departures
                    .lock()
                    .expect("not poisoned")
                    .push((who.to_string(), now));
            }
            Notice::Error(e) => receipt.error(format!("server error: {e}")),
            _ => {}
        }
    }
    room.delivered.fetch_add(unreported, Ordering::Relaxed);
    receipt
}

/// A user who logs in and then never reads: the `slow` experiment's subject.
pub(super) fn silent_user(room: &Room, index: usize, gates: &Gates, events: &Sender<Event>) {
    let name = room.silent_name(index);
    let Some(mut ws) = connect(room, true, events) else {
        return;
    };
    Gates::wait(&gates.login);
    if let Err(e) = ws.send(Message::text(login_json(&name))) {
        let _ = events.send(Event::Silent(SilentFate {
            name,
            unread_bytes: 0,
            messages: 0,
            ending: format!("login failed: {e}"),
            dropped_after_ms: None,
        }));
        return;
    }
    Gates::wait(&gates.close);
    let (mut unread_bytes, mut messages) = (0, 0);
    let ending = loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                unread_bytes += text.len() as u64;
                if scan::stamp(text.as_bytes()).is_some() {
                    messages += 1;
                }
            }
            Ok(Message::Close(Some(frame))) => {
                break format!("close {} ({})", u16::from(frame.code), frame.reason);
            }
            Ok(Message::Close(None)) => break "close (no code)".into(),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if now_us() > room.deadline() {
                    break "still open".into();
                }
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break "reset".into();
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => break "eof without close frame".into(),
            Err(e) => break net::short_error(&e.to_string()),
        }
    };
    let _ = events.send(Event::Silent(SilentFate {
        name,
        unread_bytes,
        messages,
        ending,
        dropped_after_ms: None,
    }));
}
