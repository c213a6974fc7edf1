//! One blocking client's conversation with the server, shared by every
//! experiment: wait for a text message within a deadline, log in and wait
//! for the room to be complete, close politely.
//!
//! Sockets have a short read timeout (`net::READ_POLL`), so every read here
//! returns now and then to look at the clock: a thread never blocks past its
//! phase's deadline, which is how every run stays bounded in time.

use std::net::TcpStream;

use tungstenite::{Message, WebSocket};

use crate::measure::now_us;
use crate::net;
use crate::scan::{self, Notice};

/// Reads until a text message arrives. `Ok(None)` when the phase deadline
/// passed first; `Err` when the connection ended.
pub fn next_text(
    ws: &mut WebSocket<TcpStream>,
    deadline_us: u64,
) -> Result<Option<Message>, String> {
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

/// Logs in and reads presence messages until `expected` users are online.
/// Returns the frames and bytes that took.
pub fn log_in(
    ws: &mut WebSocket<TcpStream>,
    name: &str,
    expected: usize,
    deadline_us: u64,
) -> Result<(u64, u64), String> {
    ws.send(Message::text(login_json(name)))
        .map_err(|e| format!("login: {e}"))?;
    let mut online: Option<usize> = None;
    let (mut frames, mut bytes) = (0, 0);
    while online != Some(expected) {
        let Some(message) = next_text(ws, deadline_us)? else {
            return Err(format!(
                "login: room incomplete at the deadline ({online:?} of {expected} online)"
            ));
        };
        let text = message.to_text().unwrap_or_default();
        frames += 1;
        bytes += text.len() as u64;
        match (scan::notice(text), online) {
            (Notice::Joined(who), None) if who == name => {
                online = scan::active_user_count(text);
            }
            (Notice::Joined(_), Some(n)) => online = Some(n + 1),
            (Notice::Left(_), Some(n)) => online = Some(n.saturating_sub(1)),
            (Notice::Error(e), _) => return Err(format!("login refused: {e}")),
            _ => {}
        }
    }
    Ok((frames, bytes))
}

/// Says goodbye properly: a close frame, then reading until the server's
/// reply (and whatever presence messages come before it).
pub fn close(ws: &mut WebSocket<TcpStream>, deadline_us: u64) {
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
