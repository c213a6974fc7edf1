//! The states of a login (`LoginState`), with what each holds; the
//! transitions between them, and the diagram, are in `mod.rs`.

use crate::archivist::StoredChat;
use crate::protocol::{Login, Request};

/// Where a connection is in its login.
pub(in crate::dispatcher) enum LoginState {
    /// Connected, never admitted: its first login is sent the room's
    /// history (if the room keeps one).
    New,
    /// Waiting for the room's tail to load (the keeper's `Loaded`).
    AwaitingTail(Pending),
    /// Waiting for the keeper's answer to `since` (`SinceLoaded`).
    AwaitingSince(Pending),
    /// With `--redis`: the name is claimed (or held until the room's list
    /// is first heard, `roster.rs`), and the login waits for its own change
    /// to come back. `current` is the name it is in the room under
    /// meanwhile (a rename), if any.
    Claimed {
        pending: Pending,
        history: History,
        current: Option<String>,
    },
    /// In the room under this name.
    In(String),
    /// Logged out on an open socket: a new login is not sent history again.
    Out,
}

/// A login that is not finished, and what the client sent meanwhile.
pub(in crate::dispatcher) struct Pending {
    pub(super) login: Login,
    pub(super) parked: Vec<Request>,
}

/// What a login is sent before it is in, decided now and made as it is
/// admitted (which with `--redis` is a while later: the tail has moved on).
pub(in crate::dispatcher) enum History {
    /// Nothing: not a socket's first login, or the room keeps no history.
    None,
    /// The `history` message from the room's tail.
    FromTail,
    /// What the keeper answered for `since`, joined to the tail.
    After(Vec<StoredChat>, bool),
}

impl LoginState {
    /// The name the connection is in its room under, if it is in.
    pub(in crate::dispatcher) fn name(&self) -> Option<&str> {
        match self {
            LoginState::In(name) => Some(name),
            LoginState::Claimed { current, .. } => current.as_deref(),
            _ => None,
        }
    }

    pub(in crate::dispatcher) fn is_pending(&self) -> bool {
        matches!(
            self,
            LoginState::AwaitingTail(_) | LoginState::AwaitingSince(_) | LoginState::Claimed { .. }
        )
    }

    /// Takes a claim out of its state (leaving `Out`, for the caller to
    /// set where it leads): what was pending, the history it was due, and
    /// the name it was in under meanwhile.
    pub(super) fn take_claim(&mut self) -> Option<(Pending, History, Option<String>)> {
        if !matches!(self, LoginState::Claimed { .. }) {
            return None;
        }
        match std::mem::replace(self, LoginState::Out) {
            LoginState::Claimed {
                pending,
                history,
                current,
            } => Some((pending, history, current)),
            _ => None,
        }
    }

    /// Leaves the room (logout, or dropped): the name it was in under.
    pub(in crate::dispatcher) fn leave(&mut self) -> Option<String> {
        match self {
            LoginState::In(_) => match std::mem::replace(self, LoginState::Out) {
                LoginState::In(name) => Some(name),
                _ => None,
            },
            LoginState::Claimed { current, .. } => current.take(),
            _ => None,
        }
    }
}
