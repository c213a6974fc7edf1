//! How a login becomes a member of its room.
//!
//! A login is not always finished when it arrives. With history on, a
//! socket's first login is sent the room's history before its own `login`
//! broadcast, and that history may not be at hand yet: the room's tail may
//! still be loading from the store, or a reconnecting client may ask for
//! more than the tail holds (`since`). The dispatcher never waits for the
//! archivist, so such a login is parked on the client (`Client::joining`)
//! and finished when the archivist's answer comes back as an event
//! (`chats.rs`, `Archived::Loaded` and `Archived::SinceLoaded`). The
//! alternative rejected, a blocking query here, would stall every room for
//! one user's join.
//!
//! The name is checked twice, when the login arrives and when it is
//! finished, since another user may have taken it in between.

use log::{debug, info, warn};

use super::history::Replay;
use super::{Dispatcher, drop_too_slow, follow_set};
use crate::archivist::Job;
use crate::config::MAX_PARKED_REQUESTS;
use crate::ids::ConnId;
use crate::protocol::{self, Login, Reason, Refusal, Request, RequestKind};

impl Dispatcher {
    /// A login: into the room, or a rename if the client already is in. A
    /// socket's first login gets the room's history first, which may mean
    /// waiting for it (the login is then finished by `archived`).
    pub(super) fn log_in(&mut self, id: ConnId, login: Login) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.joining.is_some() {
            let details = "wait for the answer to your first login";
            self.reply(
                id,
                Refusal::new(Some(RequestKind::Login), Reason::LoginInProgress, details),
            );
            return;
        }
        // A fresh token for the name already signed in extends the session
        // (the reader keeps its end); the room hears nothing new.
        if login.signed && client.username.as_deref() == Some(login.username.as_str()) {
            client.follows = follow_set(login.follows);
            debug!("conn {id}: session of {} extended", login.username);
            return;
        }
        if !self.name_free(id, &login.username) {
            return;
        }
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&client.room) else {
            return;
        };
        let replay = match room.recent.as_mut() {
            Some(recent) if !client.history_sent && !self.mutual_follows && self.history > 0 => {
                recent.replay(&client.room, id, &login, self.history, self.history_max)
            }
            _ => {
                self.enter(id, login, None);
                return;
            }
        };
        match replay {
            Replay::Ready(json) => self.enter(id, login, Some(json)),
            Replay::Waiting => client.joining = Some(login.clone()),
            Replay::Ask { after } => {
                let room = client.room.clone();
                client.joining = Some(login);
                if let Some(store) = &self.store {
                    let _ = store.send(Job::Since {
                        room,
                        conn: id,
                        after,
                    });
                }
            }
        }
    }

    /// Whether `username` is free in the client's room; refuses it if not.
    pub(super) fn name_free(&mut self, id: ConnId, username: &str) -> bool {
        let free = self
            .clients
            .get(&id)
            .and_then(|c| self.rooms.get(&c.room))
            .is_some_and(|room| room.name_free(id, username));
        if !free {
            warn!("conn {id}: login as {username:?} refused: name taken");
            self.reply(
                id,
                Refusal::new(
                    Some(RequestKind::Login),
                    Reason::UsernameTaken,
                    format!("{username:?} is already in the chat; choose another name"),
                ),
            );
        }
        free
    }

    /// Finishes a login: the history (if any) to the client alone, then the
    /// login to the room, so the client sees history, then its own login.
    /// With `--redis` the name is claimed in the cluster first (`cluster.rs`).
    pub(super) fn enter(&mut self, id: ConnId, login: Login, history: Option<Vec<u8>>) {
        // A login that waited may find its name taken meanwhile.
        if history.is_some() && !self.name_free(id, &login.username) {
            self.unpark(id);
            return;
        }
        if self.cluster.is_some() {
            self.claim(id, login, history.is_some());
            return;
        }
        self.admit(id, login, history, None);
    }

    /// Makes the client a member under its new name: its history first (to
    /// it alone), then the `login` message to the room: built by the room,
    /// or with `--redis` the cluster's (`announced`).
    pub(super) fn admit(
        &mut self,
        id: ConnId,
        login: Login,
        history: Option<Vec<u8>>,
        announced: Option<Vec<u8>>,
    ) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(json) = history {
            client.history_sent = true;
            if client.outbox.push(protocol::text_frame(&json)).is_err() {
                drop_too_slow(id, &client.outbox);
                return;
            }
        }
        let Some(room) = self.rooms.get_mut(&client.room) else {
            return;
        };
        let username = login.username;
        client.follows = follow_set(login.follows);
        let old = client.username.replace(username.clone());
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
        room.log_in(id, &client.outbox, &username, old.as_deref());
        if let Some(json) = announced {
            room.broadcast(&json);
        }
        let room = client.room.clone();
        self.appended(&room);
        self.unpark(id);
    }

    /// A chat or disconnect that came while the login was unfinished waits
    /// for it, rather than being refused as "not logged in": a client may
    /// send its login and its first chat without waiting in between.
    pub(super) fn park(&mut self, id: ConnId, request: Request) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.parked.len() >= MAX_PARKED_REQUESTS {
            let details = "wait for the answer to your login";
            self.reply(
                id,
                Refusal::new(Some(request.kind()), Reason::LoginInProgress, details),
            );
            return;
        }
        client.parked.push(request);
    }

    /// The login is over (finished or refused): what waited is handled now.
    pub(super) fn unpark(&mut self, id: ConnId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        for request in std::mem::take(&mut client.parked) {
            self.request(id, request);
        }
    }
}
