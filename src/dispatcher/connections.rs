//! A connection's arrival and departure, as the dispatcher sees them: a
//! client admitted to its room at the handshake (or, with sign-in on, at
//! its first verified login), rooms appearing with their first connection
//! and going with their last. There is no create or delete step for a
//! room: it exists while a connection holds it, within `--max-rooms`.

use crossbeam_channel::Sender;
use log::{debug, warn};

use super::login::LoginState;
use super::room::Room;
use super::{Client, Dispatcher};
use crate::config::RECENT_PER_ROOM;
use crate::ids::ConnId;
use crate::outbox::Outbox;
use crate::protocol::{self, Closing};

impl Dispatcher {
    /// A handshake asks to join `room`. A room exists while it has a
    /// connection, so this may create it, within the `--max-rooms` bound;
    /// with sign-in on, the room waits for a verified login (`enter_room`).
    pub(super) fn connected(
        &mut self,
        id: ConnId,
        room: String,
        outbox: Outbox,
        admitted: Sender<Result<(), String>>,
    ) {
        let client = Client {
            outbox,
            room,
            holds_room: false,
            login: LoginState::New,
            follows: None,
            role: Default::default(),
            closed: false,
        };
        self.clients.insert(id, client);
        if !self.rooms_at_login && !self.enter_room(id) {
            self.clients.remove(&id);
            let _ = admitted.send(Err(self.too_many_rooms()));
            return;
        }
        if self.shutting_down
            && let Some(client) = self.clients.get(&id)
        {
            client
                .outbox
                .close(protocol::close_frame(&Closing::ShuttingDown));
        }
        let _ = admitted.send(Ok(()));
    }

    /// Counts a client among its room's connections, opening the room if
    /// it is the first, within `--max-rooms`; false if the room would be
    /// one too many.
    pub(super) fn enter_room(&mut self, id: ConnId) -> bool {
        let name = match self.clients.get(&id) {
            Some(client) if client.holds_room => return true,
            Some(client) => client.room.clone(),
            None => return false,
        };
        if !self.rooms.contains_key(&name) {
            if self.rooms.len() >= self.max_rooms {
                warn!(
                    "conn {id}: room {name:?} refused: {} rooms open",
                    self.max_rooms
                );
                return false;
            }
            self.open_room(&name);
        }
        if let Some(room) = self.rooms.get_mut(&name) {
            room.connection_opened();
        }
        if let Some(client) = self.clients.get_mut(&id) {
            client.holds_room = true;
        }
        true
    }

    /// Why a room could not open.
    pub(super) fn too_many_rooms(&self) -> String {
        format!(
            "the server holds at most {} rooms at once; try an existing room or later",
            self.max_rooms
        )
    }

    /// How many chats a room's tail holds: enough for a newcomer's history
    /// and for most reconnects.
    pub(super) fn tail_capacity(&self) -> usize {
        RECENT_PER_ROOM.max(self.history)
    }

    /// A room appears. If its keeper keeps history, its tail is loaded;
    /// logins wait for it (`login.rs`).
    pub(super) fn open_room(&mut self, name: &str) {
        let recent = self.keeper.room_opened(name, self.tail_capacity());
        let clustered = self.keeper.follows_cluster();
        let room = Room::new(name.to_string(), self.metrics.clone(), recent, clustered);
        self.rooms.insert(name.to_string(), room);
        self.metrics.set_rooms(self.rooms.len());
    }

    pub(super) fn disconnected(&mut self, id: ConnId) {
        self.abandon_claim(id);
        self.log_out(id);
        let Some(client) = self.clients.remove(&id) else {
            return; // never admitted
        };
        if !client.holds_room {
            return;
        }
        if let Some(room) = self.rooms.get_mut(&client.room) {
            room.connection_closed();
            if room.is_empty() {
                // Nobody is left to receive what may be pending.
                self.rooms.remove(&client.room);
                self.metrics.set_rooms(self.rooms.len());
                self.keeper.room_closed(&client.room);
                debug!("room {} is gone", client.room);
            }
        }
    }
}
