//! What the moderation tests share: the class's signing secret, the
//! operator's token, and a token with a role.

use std::time::Duration;

use threadchat::auth::{Grant, mint_grant};
use threadchat::protocol::Role;

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
