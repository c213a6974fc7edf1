//! A connection's sign-in, kept by its reader thread: the token check, the
//! count of failed tries, and when the session ends.
//!
//! With `--jwt-secret` (or `--jwt-public-key`) a login carries a token
//! instead of a name. The reader checks it here, on its own thread: the
//! check is pure computation on an immutable key (`auth`), so it costs
//! the dispatcher nothing, and the dispatcher only ever sees a `Login` whose
//! name came from a verified token. A token never travels further than this
//! module, and is never logged.
//!
//! A session belongs to the room the socket was opened for: a token whose
//! `rooms` claim leaves that room out is refused like a bad token (and
//! counted as a failed try), so a token for `algebra` opens neither the
//! lobby nor `staff`, whatever it says otherwise.
//!
//! The session's end is the token's `exp` (plus the clock-skew leeway). The
//! reader already wakes up at least every ping interval to look after a
//! quiet client; it wakes up at the expiry too (its read timeout is the
//! soonest of its deadlines, `reader.rs`) and closes the connection with
//! 1008 "token expired".
//! No timer thread, and no timer in the dispatcher: the connection that the
//! token belongs to keeps its own time. A fresh token for the same name,
//! sent before that, moves the end.

use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};

use crate::auth::{AuthConfig, AuthError};
use crate::config::MAX_LOGIN_FAILURES;
use crate::ids::ConnId;
use crate::protocol::{Login, PresenceMode, Reason, Refusal, RequestKind};

pub struct SignIn<'a> {
    auth: &'a AuthConfig,
    leeway: Duration,
    /// The socket's room: a token must open it.
    room: &'a str,
    /// Refused sign-ins in a row; `MAX_LOGIN_FAILURES` closes the connection.
    failures: u32,
    /// When the signed-in session ends, if one is open.
    expires: Option<Instant>,
}

/// What a refused sign-in means for the connection.
pub enum Refused {
    /// Tell the client and let it try again.
    TryAgain(Refusal),
    /// Too many failures in a row: close with 1008.
    Close,
}

impl<'a> SignIn<'a> {
    /// The sign-in of a socket opened for `room`.
    pub fn new(auth: &'a AuthConfig, leeway: Duration, room: &'a str) -> SignIn<'a> {
        SignIn {
            auth,
            leeway,
            room,
            failures: 0,
            expires: None,
        }
    }

    /// Checks a token login. On success the session runs until the token
    /// expires, and the dispatcher gets a `Login` under the token's `sub`.
    pub fn check(&mut self, id: ConnId, token: &str, since: Option<u64>) -> Result<Login, Refused> {
        let verified = self.auth.verify(token).and_then(|identity| {
            if identity.opens(self.room) {
                Ok(identity)
            } else {
                Err(AuthError::room_closed(self.room))
            }
        });
        match verified {
            Ok(identity) => {
                self.failures = 0;
                let left = identity
                    .expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                self.expires = Some(Instant::now() + left + self.leeway);
                info!("conn {id}: signed in as {}", identity.username);
                Ok(Login {
                    username: identity.username,
                    since,
                    follows: identity.follows,
                    signed: true,
                    role: identity.role,
                    presence: PresenceMode::Lists,
                })
            }
            Err(e) => self.refuse(id, e.details()),
        }
    }

    /// Counts a refused sign-in (a bad token, or a login without one).
    pub fn refuse(&mut self, id: ConnId, details: &str) -> Result<Login, Refused> {
        self.failures += 1;
        warn!(
            "conn {id}: sign-in refused ({} of {MAX_LOGIN_FAILURES}): {details}",
            self.failures
        );
        if self.failures >= MAX_LOGIN_FAILURES {
            return Err(Refused::Close);
        }
        Err(Refused::TryAgain(Refusal::new(
            Some(RequestKind::Login),
            Reason::AuthenticationFailed,
            details,
        )))
    }

    /// Whether the signed-in session has run out.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|end| now >= end)
    }

    /// When the signed-in session ends, if one is open.
    pub fn ends(&self) -> Option<Instant> {
        self.expires
    }
}
