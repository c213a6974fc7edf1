//! What the moderation tests share: the class's signing secret, the
//! operator's token, a token with a role, and signing in with it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use threadchat::auth::{Grant, mint_grant};
use threadchat::protocol::Role;

use super::Client;

pub const SECRET: &str = "a class secret that is long enough for HS256!";
pub const OPERATOR: &str = "operator-token-0123456789-abcdefghijklmnop";

/// A token for `user` with `role`, valid for an hour.
pub fn token(user: &str, role: Role) -> String {
    let grant = Grant {
        username: user.to_string(),
        ttl: Duration::from_secs(3600),
        role,
        ..Grant::default()
    };
    mint_grant(SECRET.as_bytes(), &grant).unwrap()
}

/// Signs `user` in to room `r` at `addr`; returns the client and what it
/// was sent before its own `login` (its history, the room's mode).
pub fn join(addr: SocketAddr, user: &str, role: Role) -> (Client, Vec<Value>) {
    let mut client = Client::connect_to(addr, "/r/r");
    client.send_json(json!({"type": "login", "token": token(user, role)}));
    let mut before = Vec::new();
    loop {
        let message = client.recv_json();
        if message["type"] == "login" && message["user_joined"] == user {
            return (client, before);
        }
        assert_ne!(message["type"], "error", "{user}: {message}");
        before.push(message);
    }
}
