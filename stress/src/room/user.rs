//! The life of one simulated user on a thread of its own: one OS thread,
//! one blocking socket, as in the course's clients. It connects, waits at
//! the login gate, logs in, waits at the chat gate, reads (and, for a
//! sender, starts its writing thread), reports its receipt, waits at the
//! close gate and says goodbye.
//!
//! A "silent" user (the `slow` experiment) logs in and then never reads
//! again until the close gate, then reads what piled up to learn its fate.

use std::sync::Arc;

use crossbeam_channel::Sender;
use tungstenite::{Message, WebSocket};

use super::receipt::Receipt;
use super::sender::spawn_sender;
use super::{Event, Gates, Run, SilentFate};
use crate::client::{close, is_timeout, log_in, login_json, next_text};
use crate::measure::{Histogram, now_us};
use crate::net::{self, Conn};
use crate::scan;

/// Opens a user's connection and reports the outcome to the main thread.
fn connect(
    run: &Run,
    room: usize,
    index: usize,
    silent: bool,
    events: &Sender<Event>,
) -> Option<WebSocket<Conn>> {
    let opened = run.open(room, index, net::CHAT_READ_BUFFER);
    let outcome = opened.as_ref().map(|_| ()).map_err(Clone::clone);
    let _ = events.send(Event::Connected {
        room,
        silent,
        outcome,
    });
    opened.ok()
}

/// The life of one reading user (a sender too if `index < senders`).
pub(super) fn user(
    run: &Arc<Run>,
    room: usize,
    index: usize,
    gates: &Gates,
    events: &Sender<Event>,
) {
    let plan = &run.plan;
    let Some(mut ws) = connect(run, room, index, false, events) else {
        return;
    };

    Gates::wait(&gates.login);
    let mut presence = run.presence(room, index);
    match log_in(&mut ws, &mut presence, run.deadline()) {
        Ok(()) => {
            let _ = events.send(Event::Settled {
                room,
                user: index,
                at_us: now_us(),
                frames: presence.frames,
                bytes: presence.bytes,
                crossed: presence.crossed,
            });
        }
        Err(e) => {
            let _ = events.send(Event::LoginFailed(e));
            return;
        }
    }

    Gates::wait(&gates.chat);
    let mut receipt = Receipt::new(room, index, plan.senders, plan.messages);
    let mut latency = Box::default();
    let sender = if index < plan.senders {
        match spawn_sender(run, room, index as u32, &ws) {
            Ok(handle) => Some(handle),
            Err(e) => {
                receipt.error(e);
                run.room(room).retire(index);
                let _ = events.send(Event::Chatted(Box::new(receipt), Some(latency)));
                return;
            }
        }
    } else {
        None
    };
    receive(run, &mut ws, &mut receipt, &mut latency);
    run.room(room).retire(index);
    if let Some(handle) = sender {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => receipt.error(format!("sender: {e}")),
            Err(_) => receipt.error("sender thread panicked".into()),
        }
    }
    let _ = events.send(Event::Chatted(Box::new(receipt), Some(latency)));

    Gates::wait(&gates.close);
    close(&mut ws, run.deadline());
}

/// Reads the chat phase's deliveries and accounts for each.
fn receive(run: &Run, ws: &mut WebSocket<Conn>, receipt: &mut Receipt, latency: &mut Histogram) {
    while !receipt.complete() {
        match next_text(ws, run.deadline()) {
            Ok(Some(message)) => {
                let now = now_us();
                receipt.take(run, &message.into_data(), now, latency);
            }
            Ok(None) => break,
            Err(e) => {
                receipt.error(e);
                break;
            }
        }
    }
    receipt.report_progress(run);
}

/// A user who logs in and then never reads: the `slow` experiment's subject.
pub(super) fn silent_user(
    run: &Run,
    room: usize,
    index: usize,
    gates: &Gates,
    events: &Sender<Event>,
) {
    let name = run.user_name(room, index);
    let Some(mut ws) = connect(run, room, index, true, events) else {
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
                if now_us() > run.deadline() {
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
