//! A login's life, from the handshake to the room and out again: one named
//! state per connection (`LoginState`, `state.rs`), and every transition,
//! here.
//!
//! A login is not always finished when it arrives. A socket's first login
//! is sent the room's history before its own `login` broadcast, and that
//! history may not be at hand yet: the room's tail may still be loading, or
//! a reconnecting client may ask for more than the tail holds (`since`).
//! With `--redis` the name must also be claimed in the cluster (once the
//! room's list is known, `roster.rs`), and the login is finished when its
//! own change comes back from Redis.
//! The dispatcher never waits for any of that: the login waits in its
//! state, and the answer, an event, moves it on. The alternative rejected,
//! a blocking query here, would stall every room for one user's join.
//!
//! ```text
//!            login                      login (history due)
//!   New ─────────────────┬────────────────────────────────────┐
//!   Out ──────────────┐  │        tail loading: AwaitingTail ──┤ tail loaded: again
//!   In(name) rename ──┤  │  tail lacks `since`: AwaitingSince ─┤ keeper answers
//!                     ▼  ▼                                     ▼
//!                  (name free?) ──── --redis: Claimed ── its change heard ──▶ In(name)
//!                        └───────────────────────────────────────────────────▶ In(name)
//!   In(name) ── logout, or dropped ──▶ Out
//! ```
//!
//! A login under the very name the connection is in under (case included)
//! goes nowhere: the room hears nothing, and the client alone is answered
//! (`log_in_again`), so that repeating it costs the other members nothing.
//!
//! A refused login (name taken, claim refused) goes back to where it came
//! from: `New` (history still due), `Out`, or `In` under the old name. The
//! name is checked when the login arrives and again when a wait ends,
//! since another user may have taken it meanwhile. Chats and disconnects
//! that come while a login is pending are parked with it and handled, in
//! order, once it is finished or refused: a client may send its login and
//! its first chat without waiting in between.
//!
//! With sign-in on, a login is also where a room opens (`enter_room`), so a
//! socket without a verified token never holds one: `--max-rooms` is spent
//! on signed users alone. The room's tail then loads as for any login.

mod state;

use log::{debug, info, warn};

use super::fanout::drop_too_slow;
use super::history::Plan;
use super::roster::Heard;
use super::{Dispatcher, follow_set};
use crate::archivist::StoredChat;
use crate::config::MAX_PARKED_REQUESTS;
use crate::ids::ConnId;
use crate::protocol::{self, Login, Reason, Refusal, Request, RequestKind};
pub(super) use state::{History, LoginState, Pending};

impl Dispatcher {
    /// A login: into the room, or a rename if the client already is in.
    pub(super) fn log_in(&mut self, id: ConnId, login: Login) {
        self.start_login(id, login, Vec::new());
    }

    /// A login, with what the client sent while it waited (for a tail).
    fn start_login(&mut self, id: ConnId, login: Login, parked: Vec<Request>) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.login.is_pending() {
            let details = "wait for the answer to your first login";
            let refusal = Refusal::new(Some(RequestKind::Login), Reason::LoginInProgress, details);
            self.reply(id, refusal);
            return;
        }
        // The name it is in under already, exactly (a rename to another
        // case of it is a rename): the room hears nothing, so that repeating
        // a login costs the others nothing. A fresh token extends the
        // session (the reader keeps its end); a plain login is answered, to
        // this client alone, with the `login` message it waits for.
        if client.login.name() == Some(login.username.as_str()) {
            if login.signed {
                client.follows = follow_set(login.follows);
                client.role = login.role;
                debug!("conn {id}: session of {} extended", login.username);
            } else {
                debug!("conn {id}: login as {} again", login.username);
                self.log_in_again(id);
            }
            self.handle_parked(id, parked);
            return;
        }
        // With sign-in on, this is where a room opens: at a verified login.
        if !self.enter_room(id) {
            let details = self.too_many_rooms();
            let refusal = Refusal::new(Some(RequestKind::Login), Reason::TooManyRooms, details);
            self.reply(id, refusal);
            self.handle_parked(id, parked);
            return;
        }
        if self.refuse_banned(id, &login.username) || !self.name_free(id, &login.username) {
            self.handle_parked(id, parked);
            return;
        }
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let history_due =
            matches!(client.login, LoginState::New) && !self.mutual_follows && self.history > 0;
        let tail = self
            .rooms
            .get_mut(&client.room)
            .and_then(|room| room.recent.as_mut())
            .filter(|_| history_due);
        let Some(tail) = tail else {
            return self.proceed(id, Pending { login, parked }, History::None);
        };
        match tail.plan(id, login.since) {
            Plan::FromTail => self.proceed(id, Pending { login, parked }, History::FromTail),
            Plan::Wait => client.login = LoginState::AwaitingTail(Pending { login, parked }),
            Plan::Ask { after } => {
                self.keeper.ask_since(&client.room, id, after);
                client.login = LoginState::AwaitingSince(Pending { login, parked });
            }
        }
    }

    /// The room's tail has loaded: a login that waited for it starts again.
    pub(super) fn tail_loaded(&mut self, id: ConnId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let LoginState::AwaitingTail(pending) =
            std::mem::replace(&mut client.login, LoginState::New)
        {
            self.start_login(id, pending.login, pending.parked);
        }
    }

    /// The keeper's answer to a login's `since`: the chats after it, and
    /// whether none is missing.
    pub(super) fn since_loaded(&mut self, id: ConnId, chats: Vec<StoredChat>, complete: bool) {
        let Some(client) = self.clients.get_mut(&id) else {
            return; // gone meanwhile
        };
        let LoginState::AwaitingSince(pending) =
            std::mem::replace(&mut client.login, LoginState::New)
        else {
            return;
        };
        // The name may have been taken while the login waited.
        if !self.name_free(id, &pending.login.username) {
            self.handle_parked(id, pending.parked);
            return;
        }
        self.proceed(id, pending, History::After(chats, complete));
    }

    /// Whether `username` is free in the client's room; refuses it if not.
    fn name_free(&mut self, id: ConnId, username: &str) -> bool {
        let free = self
            .clients
            .get(&id)
            .and_then(|c| self.rooms.get(&c.room))
            .is_some_and(|room| room.name_free(id, username));
        if !free {
            warn!("conn {id}: login as {username:?} refused: name taken");
            let details = format!("{username:?} is already in the chat; choose another name");
            let refusal = Refusal::new(Some(RequestKind::Login), Reason::UsernameTaken, details);
            self.reply(id, refusal);
        }
        free
    }

    /// A login with its history decided: claimed first with `--redis`,
    /// else admitted now.
    fn proceed(&mut self, id: ConnId, pending: Pending, history: History) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let current = client.login.name().map(str::to_string);
        if self.keeper.claims_names() {
            let (room, name) = (client.room.clone(), pending.login.username.clone());
            client.login = LoginState::Claimed {
                pending,
                history,
                current: current.clone(),
            };
            self.claim(&room, id, &name, current.as_deref());
            return;
        }
        self.admit(id, pending, current, history, None);
    }

    /// With `--redis`, a claim held until the room's list was heard: sent
    /// now, if the login still waits for it.
    pub(super) fn send_claim(&mut self, id: ConnId) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if let LoginState::Claimed {
            pending, current, ..
        } = &client.login
        {
            let (name, current) = (&pending.login.username, current.as_deref());
            self.keeper.claim(&client.room, id, name, current);
        }
    }

    /// With `--redis`, a name `in` for one of this node's connections: if it
    /// answers its claim, the client is in now; either way the room hears
    /// it.
    pub(super) fn claim_heard(&mut self, id: ConnId, room: &str, heard: Heard) {
        let claim = self.clients.get_mut(&id).and_then(|c| c.login.take_claim());
        match claim {
            Some((pending, history, current)) => {
                self.admit(id, pending, current, history, Some(heard));
            }
            None => self.roster_heard(room, heard), // a re-announcement
        }
    }

    /// With `--redis`, the cluster refused a claim: the login goes back to
    /// where it came from. True if there was a claim to refuse.
    pub(super) fn claim_refused(&mut self, id: ConnId, refusal: Refusal) -> bool {
        let Some(client) = self.clients.get_mut(&id) else {
            return false;
        };
        let Some((pending, history, current)) = client.login.take_claim() else {
            return false;
        };
        client.login = match (current, history) {
            (Some(name), _) => LoginState::In(name),
            (None, History::None) => LoginState::Out,
            (None, _) => LoginState::New,
        };
        warn!(
            "conn {id}: login refused by the cluster: {}",
            refusal.reason
        );
        self.reply(id, refusal);
        self.handle_parked(id, pending.parked);
        true
    }

    /// A connection ends while its claim is out: whatever the cluster
    /// answers, the claimed name is released after it.
    pub(super) fn abandon_claim(&mut self, id: ConnId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some((pending, _, current)) = client.login.take_claim() {
            client.login = current.map_or(LoginState::Out, LoginState::In);
            let room = client.room.clone();
            self.keeper.release(&room, id, pending.login.username);
        }
    }

    /// Makes the client a member under its new name: its history first (to
    /// it alone), then the `login` message to the room, built by the room
    /// from its members, or with `--redis` from the change the cluster
    /// published (`announced`) and the room's list of every node's users.
    fn admit(
        &mut self,
        id: ConnId,
        pending: Pending,
        old: Option<String>,
        history: History,
        announced: Option<Heard>,
    ) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&client.room) else {
            return;
        };
        let Pending { login, parked } = pending;
        let earlier = match history {
            History::None => None,
            History::FromTail => Some(None),
            History::After(chats, complete) => Some(Some((chats, complete))),
        };
        let messages = earlier.and_then(|earlier| {
            let tail = room.recent.as_ref()?;
            Some(tail.history_for(&client.room, login.since, earlier, &self.allowance))
        });
        // A catch-up's pages go in one push: queued together or not at all.
        if let Some(messages) = messages
            && client.outbox.push(protocol::text_frames(messages)).is_err()
        {
            client.login = LoginState::Out;
            drop_too_slow(id, &client.outbox);
            let room = client.room.clone();
            if let Some(heard) = announced {
                self.roster_heard(&room, heard); // the room's list all the same
            }
            return;
        }
        let username = login.username;
        client.follows = follow_set(login.follows);
        client.role = login.role;
        client.login = LoginState::In(username.clone());
        client.outbox.mark_logged_in(); // the reader's login deadline is met
        if old.is_none() {
            self.logged_in += 1;
            self.metrics.set_logged_in(self.logged_in);
        }
        match &old {
            Some(old) => info!("{old} is now {username} in {}", client.room),
            None => info!(
                "{username} joined {} ({} online here)",
                client.room,
                room.users() + 1
            ),
        }
        let dropped = room.log_in(
            id,
            &client.outbox,
            &username,
            old.as_deref(),
            login.presence,
        );
        let next = announced.map(|heard| room.cluster_heard(heard));
        let room = client.room.clone();
        self.forget_dropped(dropped);
        self.appended(&room);
        if let Some(next) = next {
            self.roster_next(&room, next);
        }
        self.admitted(id);
        self.handle_parked(id, parked);
    }

    /// A login under the name the client is in under already: it alone is
    /// sent the room's `login` message for it, listing who is in (with
    /// `--redis`, every node's users, as the room follows them).
    fn log_in_again(&mut self, id: ConnId) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let (Some(name), Some(room)) = (client.login.name(), self.rooms.get(&client.room)) else {
            return;
        };
        let json = protocol::login_json(name, room.listed(), room.name());
        self.tell(id, protocol::text_frame(&json));
    }

    /// A chat or disconnect that came while the login was pending waits
    /// for it, rather than being refused as "not logged in".
    pub(super) fn park(&mut self, id: ConnId, request: Request) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let pending = match &mut client.login {
            LoginState::AwaitingTail(pending)
            | LoginState::AwaitingSince(pending)
            | LoginState::Claimed { pending, .. } => pending,
            _ => return,
        };
        if pending.parked.len() >= MAX_PARKED_REQUESTS {
            let details = "wait for the answer to your login";
            let refusal = Refusal::new(Some(request.kind()), Reason::LoginInProgress, details);
            self.reply(id, refusal);
            return;
        }
        pending.parked.push(request);
    }

    /// The login is over (finished or refused): what waited is handled now.
    fn handle_parked(&mut self, id: ConnId, parked: Vec<Request>) {
        for request in parked {
            self.request(id, request);
        }
    }
}
