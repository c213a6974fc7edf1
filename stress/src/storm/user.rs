//! One user of a storm, as it sees its room fill: counted from its own
//! login answer's list, then from every `login`, `disconnect` or
//! `presence` message, by name (only this run's users count).

use std::net::TcpStream;

use tungstenite::WebSocket;

use crate::scan;

/// One user's view of the room while it logs in.
pub(super) struct User {
    pub(super) ws: WebSocket<TcpStream>,
    pub(super) name: String,
    /// This run's users it knows online, once its own login answer came.
    pub(super) online: Option<usize>,
    pub(super) bytes: u64,
    pub(super) messages: u64,
    pub(super) done_us: Option<u64>,
    pub(super) failed: bool,
}

impl User {
    /// Takes one text message.
    pub(super) fn see(
        &mut self,
        text: &str,
        prefix: &str,
        expected: usize,
        now: u64,
    ) -> Result<(), String> {
        self.bytes += text.len() as u64;
        self.messages += 1;
        let kind = scan::string_field(text, "type").unwrap_or_default();
        let mine = |name: &str| usize::from(name.starts_with(prefix));
        match (kind, self.online) {
            ("login", None) if scan::string_field(text, "user_joined") == Some(&self.name) => {
                let (n, _) =
                    scan::active_users_with_prefix(text, prefix, "\u{0}").unwrap_or((1, 0));
                self.online = Some(n);
            }
            ("login", Some(n)) => {
                let who = scan::string_field(text, "user_joined").unwrap_or_default();
                self.online = Some(n + mine(who));
            }
            ("disconnect", Some(n)) => {
                let who = scan::string_field(text, "user_left").unwrap_or_default();
                self.online = Some(n.saturating_sub(mine(who)));
            }
            ("presence", Some(n)) => {
                let count = |key: &str| names_with_prefix(text, key, prefix);
                self.online = Some(match count("users") {
                    Some(all) => all,
                    None => (n + count("joined").unwrap_or(0))
                        .saturating_sub(count("left").unwrap_or(0)),
                });
            }
            ("error", _) => return Err(format!("refused: {}", truncate(text))),
            _ => {}
        }
        if self.done_us.is_none() && self.online.is_some_and(|n| n >= expected) {
            self.done_us = Some(now);
        }
        Ok(())
    }
}

/// How many names in the list `key` start with `prefix`, read without
/// parsing the message: at 8,000 users a user's presence messages hold
/// 8,000 names, and parsing them all into strings was most of the tool's
/// CPU. Names of a storm hold no quotes.
fn names_with_prefix(json: &str, key: &str, prefix: &str) -> Option<usize> {
    let quoted = format!("\"{key}\":[");
    let start = json.find(&quoted)? + quoted.len();
    let list = &json[start..start + json[start..].find(']')?];
    Some(
        list.split('"')
            .skip(1)
            .step_by(2)
            .filter(|name| name.starts_with(prefix))
            .count(),
    )
}

fn truncate(text: &str) -> &str {
    &text[..text.len().min(120)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(user: &mut User, text: &str) -> Option<usize> {
        user.see(text, "t1s-", 3, 1).unwrap();
        user.online
    }

    #[test]
    fn counts_the_room_from_lists_and_from_changes() {
        let stream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = stream.local_addr().unwrap();
        let _server = std::thread::spawn(move || {
            let (socket, _) = stream.accept().unwrap();
            let _ = tungstenite::accept(socket);
        });
        let socket = TcpStream::connect(addr).unwrap();
        let (ws, _) = tungstenite::client::client(format!("ws://{addr}/"), socket).unwrap();
        let mut user = User {
            ws,
            name: "t1s-u1".into(),
            online: None,
            bytes: 0,
            messages: 0,
            done_us: None,
            failed: false,
        };
        let own = r#"{"type":"login","user_joined":"t1s-u1","active_users":["old","t1s-u0","t1s-u1"],"room":"r"}"#;
        assert_eq!(seen(&mut user, own), Some(2));
        let left =
            r#"{"type":"presence","room":"r","joined":["t1s-u2","t1s-u3"],"left":["t1s-u0"]}"#;
        assert_eq!(seen(&mut user, left), Some(3));
        assert_eq!(user.done_us, Some(1));
        let reset = r#"{"type":"presence","room":"r","users":["t1s-u1"]}"#;
        assert_eq!(seen(&mut user, reset), Some(1));
        let login = r#"{"type":"login","user_joined":"t1s-u9","active_users":[],"room":"r"}"#;
        assert_eq!(seen(&mut user, login), Some(2));
    }
}
