//! One blocking client's conversation with the server, shared by every
//! experiment: wait for a text message within a deadline, log in and wait
//! for the room to be complete, close politely.
//!
//! Sockets have a short read timeout (`net::READ_POLL`), so every read here
//! returns now and then to look at the clock: a thread never blocks past its
//! phase's deadline, which is how every run stays bounded in time.

use tungstenite::{Message, WebSocket};

use crate::measure::now_us;
use crate::net::{self, Conn};
use crate::presence::Presence;

/// Reads until a text message arrives. `Ok(None)` when the phase deadline
/// passed first; `Err` when the connection ended.
pub fn next_text(ws: &mut WebSocket<Conn>, deadline_us: u64) -> Result<Option<Message>, String> {
    loop {
        match ws.read() {
            Ok(message @ Message::Text(_)) => return Ok(Some(message)),
            Ok(Message::Close(frame)) => {
                return Err(match frame {
                    Some(f) => format!("closed by server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by server".into(),
                });
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if now_us() > deadline_us {
                    return Ok(None);
                }
            }
            Err(e) => return Err(net::short_error(&e.to_string())),
        }
    }
}

pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

pub fn login_json(name: &str) -> String {
    format!(r#"{{"type":"login","username":"{name}"}}"#)
}

/// Logs in and reads presence messages until the user's room is complete
/// (see `Presence`); the frames, bytes and crossings are left in `presence`.
pub fn log_in(
    ws: &mut WebSocket<Conn>,
    presence: &mut Presence,
    deadline_us: u64,
) -> Result<(), String> {
    ws.send(Message::text(login_json(presence.name())))
        .map_err(|e| format!("login: {e}"))?;
    loop {
        let Some(message) = next_text(ws, deadline_us)? else {
            return Err(presence.incomplete());
        };
        if presence.see(message.to_text().unwrap_or_default())? {
            return Ok(());
        }
    }
}

/// Says goodbye properly: a close frame, then reading until the server's
/// reply (and whatever presence messages come before it).
pub fn close(ws: &mut WebSocket<Conn>, deadline_us: u64) {
    if ws.close(None).is_err() {
        return;
    }
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if now_us() > deadline_us {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
