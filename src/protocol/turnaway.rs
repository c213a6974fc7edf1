//! Why a socket is turned away at the door, before it is a WebSocket or
//! gets a page (`Turnaway`): the HTTP status and the sentence, one variant
//! each, as `refusal.rs` does for messages and connections.

/// Why a socket is turned away at the door, before it is a WebSocket or
/// gets a page: the HTTP status it is answered with, and the sentence in
/// the answer's body. Counted by that status (`HandshakeStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turnaway {
    /// At `--max-connections`.
    ServerFull,
    /// Its address already holds `limit` connections
    /// (`--max-connections-per-ip`).
    TooManyFromAddress { limit: usize },
}

impl Turnaway {
    /// The status line's code and phrase.
    pub fn status(self) -> &'static str {
        match self {
            Turnaway::ServerFull => "503 Service Unavailable",
            Turnaway::TooManyFromAddress { .. } => "429 Too Many Requests",
        }
    }

    /// The answer's body: what happened, and what to do.
    pub fn text(self) -> String {
        match self {
            Turnaway::ServerFull => "the server is full; try again later".to_string(),
            Turnaway::TooManyFromAddress { limit } => format!(
                "too many connections from your address (at most {limit} at once); \
                 close some and try again"
            ),
        }
    }
}
