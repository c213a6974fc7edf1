//! The dispatcher: one thread that owns who is online, in which room, and
//! decides who hears what.
//!
//! Every reader sends its events here over one channel, and this thread is
//! the only one that ever reads or changes the chat's state: the clients and
//! the rooms (`room.rs`). That is why nothing here needs a `Mutex`:
//! ownership, not locking, keeps it consistent, and events are handled one
//! at a time in the order they arrived, which is also the order every member
//! of a room receives the room's broadcasts in.
//!
//! The dispatcher routes; the rooms do the work. Each event names a
//! connection, each connection belongs to one room (chosen by its WebSocket
//! path at the handshake), and the event goes to that room. Other threads
//! that need to know something only the dispatcher knows (may this
//! connection open a new room? which rooms have users?) *ask* it, with an
//! event that carries a one-shot reply channel, and wait for the answer on
//! their own thread.
//!
//! The dispatcher never blocks on a client. Broadcasting is pushing one
//! shared, already-encoded frame into each recipient's `Outbox`; a client
//! whose queue is full is too slow, and is disconnected on the spot (close
//! 1008) instead of holding everyone else back.
//!
//! Broadcasts are batched per room (see `room.rs`): while more events are
//! already waiting, the frames of consecutive broadcasts in a room are
//! appended to one buffer, and the rooms that have something pending are
//! flushed when the channel runs dry or a buffer is large.

use std::collections::HashMap;

use crossbeam_channel::{Receiver, Sender};
use log::{debug, info, warn};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame as WsFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::config::{Config, MAX_EVENTS_PER_BATCH};
use crate::outbox::Outbox;
use crate::protocol::{self, Frame, Refusal, Request};
use crate::room::Room;

/// Identifies a connection for its whole life; assigned by the accept loop.
pub type ConnId = u64;

/// What readers (and the server) tell the dispatcher.
pub enum Event {
    /// A WebSocket handshake is under way for `room`; here is the way to
    /// reach the client. The dispatcher answers on `admitted`: `Ok` to go on
    /// with the upgrade, or the reason to refuse it (too many rooms).
    Connected {
        id: ConnId,
        room: String,
        outbox: Outbox,
        admitted: Sender<Result<(), String>>,
    },
    /// The client sent a valid request.
    Request { id: ConnId, request: Request },
    /// The connection is over, for whatever reason. Sent exactly once per
    /// connection that sent `Connected`, by the reader, even when it panics.
    Disconnected { id: ConnId },
    /// `GET /api/rooms`: every room with a logged-in user, by name.
    ListRooms { reply: Sender<Vec<RoomSummary>> },
    /// The server is stopping: say goodbye (close 1001) to every client.
    Shutdown,
    /// Grace is over: shut every remaining socket down now.
    ForceClose,
}

/// A room as `/api/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    pub name: String,
    pub users: usize,
}

/// A connected client, as the dispatcher sees it.
struct Client {
    outbox: Outbox,
    /// The room its WebSocket path named; fixed for the connection's life.
    room: String,
    /// `Some` once logged in; only logged-in clients receive broadcasts.
    username: Option<String>,
}

pub struct Dispatcher {
    clients: HashMap<ConnId, Client>,
    /// Every room with at least one connection, by name.
    rooms: HashMap<String, Room>,
    /// Rooms with broadcasts pending, each listed once: flushed at the end
    /// of each batch of events, so a flush visits only rooms with traffic.
    dirty: Vec<String>,
    /// Set by `Shutdown`: latecomers are sent away at once.
    shutting_down: bool,
    /// A room's pending batch is flushed once it holds this many bytes.
    batch_bytes: usize,
    /// Rooms that may exist at once (`--max-rooms`).
    max_rooms: usize,
}

impl Dispatcher {
    pub fn new(config: &Config) -> Self {
        Dispatcher {
            clients: HashMap::new(),
            rooms: HashMap::new(),
            dirty: Vec::new(),
            shutting_down: false,
            batch_bytes: config.broadcast_batch_bytes,
            max_rooms: config.max_rooms,
        }
    }

    /// Handles events until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>) {
        while let Ok(event) = events.recv() {
            self.handle(event);
            // Whatever else is already waiting joins the same batch.
            for event in events.try_iter().take(MAX_EVENTS_PER_BATCH) {
                self.handle(event);
            }
            self.flush();
        }
        debug!("dispatcher: all senders gone, stopping");
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Connected {
                id,
                room,
                outbox,
                admitted,
            } => self.connected(id, room, outbox, admitted),
            Event::Request { id, request } => self.request(id, request),
            Event::Disconnected { id } => self.disconnected(id),
            Event::ListRooms { reply } => {
                let mut rooms: Vec<RoomSummary> = self
                    .rooms
                    .values()
                    .filter(|room| room.users() > 0)
                    .map(|room| RoomSummary {
                        name: room.name().to_string(),
                        users: room.users(),
                    })
                    .collect();
                rooms.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = reply.send(rooms);
            }
            Event::Shutdown => {
                self.flush();
                self.shutting_down = true;
                let goodbye = close_frame(CloseCode::Away, "server shutting down");
                for client in self.clients.values() {
                    client.outbox.close(goodbye.clone());
                }
            }
            Event::ForceClose => {
                for client in self.clients.values() {
                    client.outbox.shutdown_socket();
                }
            }
        }
    }

    /// A handshake asks to join `room`. A room exists while it has a
    /// connection, so this may create it, within the `--max-rooms` bound.
    fn connected(
        &mut self,
        id: ConnId,
        room: String,
        outbox: Outbox,
        admitted: Sender<Result<(), String>>,
    ) {
        if !self.rooms.contains_key(&room) && self.rooms.len() >= self.max_rooms {
            warn!(
                "conn {id}: room {room:?} refused: {} rooms open",
                self.max_rooms
            );
            let _ = admitted.send(Err(format!(
                "the server holds at most {} rooms at once; try an existing room or later",
                self.max_rooms
            )));
            return;
        }
        self.rooms
            .entry(room.clone())
            .or_insert_with(|| Room::new(room.clone()))
            .connection_opened();
        if self.shutting_down {
            outbox.close(close_frame(CloseCode::Away, "server shutting down"));
        }
        self.clients.insert(
            id,
            Client {
                outbox,
                room,
                username: None,
            },
        );
        let _ = admitted.send(Ok(()));
    }

    fn disconnected(&mut self, id: ConnId) {
        self.log_out(id);
        let Some(client) = self.clients.remove(&id) else {
            return; // never admitted
        };
        if let Some(room) = self.rooms.get_mut(&client.room) {
            room.connection_closed();
            if room.is_empty() {
                // Nobody is left to receive what may be pending.
                self.rooms.remove(&client.room);
                debug!("room {} is gone", client.room);
            }
        }
    }

    fn request(&mut self, id: ConnId, request: Request) {
        let Some(client) = self.clients.get(&id) else {
            return; // already gone (dropped as too slow, say)
        };
        let logged_in = client.username.is_some();
        match request {
            Request::Login { username } => self.log_in(id, username),
            Request::Chat { message } if logged_in => {
                let username = client.username.as_deref().unwrap_or_default();
                debug!("conn {id}: chat from {username}");
                let json = protocol::chat_json(&message, username, &client.room);
                let room = client.room.clone();
                self.broadcast(&room, &json);
            }
            Request::Disconnect if logged_in => self.log_out(id),
            Request::Chat { .. } => self.refuse_not_logged_in(id, "chat"),
            Request::Disconnect => self.refuse_not_logged_in(id, "disconnect"),
        }
    }

    fn refuse_not_logged_in(&mut self, id: ConnId, kind: &'static str) {
        warn!("conn {id}: {kind} refused: not logged in");
        let details = format!("send {{\"type\":\"login\",\"username\":…}} before {kind}");
        self.reply(id, Refusal::new(Some(kind), "not logged in", details));
    }

    /// Logs a connection into its room, or renames it if it already is.
    fn log_in(&mut self, id: ConnId, username: String) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&client.room) else {
            return;
        };
        if !room.name_free(id, &username) {
            warn!("conn {id}: login as {username:?} refused: name taken");
            self.reply(
                id,
                Refusal::new(
                    Some("login"),
                    "username is taken",
                    format!("{username:?} is already in the chat; choose another name"),
                ),
            );
            return;
        }
        let old = client.username.replace(username.clone());
        match &old {
            Some(old) => info!("{old} is now {username} in {}", client.room),
            None => info!(
                "{username} joined {} ({} online)",
                client.room,
                room.users() + 1
            ),
        }
        room.log_in(id, &client.outbox, &username, old.as_deref());
        let room = client.room.clone();
        self.appended(&room);
    }

    /// Takes a connection out of its room, if it was in, and tells the rest.
    /// Safe to call twice: a user leaves exactly once.
    fn log_out(&mut self, id: ConnId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.username.take().is_none() {
            return;
        }
        let room_name = client.room.clone();
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        let dropped = room.log_out(id);
        self.forget_dropped(dropped);
        self.appended(&room_name);
    }

    /// Adds a message for every logged-in member of `room`.
    fn broadcast(&mut self, room: &str, json: &[u8]) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.broadcast(json);
            self.appended(room);
        }
    }

    /// Something was appended to `room`'s batch: flush it now if it is
    /// large, else remember to flush it at the end of this batch of events.
    fn appended(&mut self, room: &str) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.pending_bytes() >= self.batch_bytes {
            self.flush_room(room);
        } else if r.mark_for_flush() {
            self.dirty.push(room.to_string());
        }
    }

    /// Queues every room's pending batch for its members.
    fn flush(&mut self) {
        for room in std::mem::take(&mut self.dirty) {
            self.flush_room(&room);
        }
    }

    fn flush_room(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            let dropped = r.flush();
            self.forget_dropped(dropped);
        }
    }

    /// Clients a room dropped as too slow are no longer logged in.
    fn forget_dropped(&mut self, dropped: Vec<ConnId>) {
        for id in dropped {
            if let Some(client) = self.clients.get_mut(&id) {
                client.username = None;
            }
        }
    }

    /// Sends a refusal to one client. If even that does not fit, the client
    /// is not reading, and is dropped like any other slow client.
    fn reply(&mut self, id: ConnId, refusal: Refusal) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        // Everything broadcast before this refusal reaches the client first.
        let room = client.room.clone();
        self.flush_room(&room);
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if client.outbox.push(refusal.to_frame()).is_err() {
            drop_too_slow(id, &client.outbox);
            self.log_out(id);
        }
    }
}

/// A client whose queue is full is not reading: close it (1008) without
/// waiting for it. The caller takes it out of its room.
pub fn drop_too_slow(id: ConnId, outbox: &Outbox) {
    outbox.abandon(close_frame(
        CloseCode::Policy,
        "outbound queue full: client is reading too slowly",
    ));
    warn!("conn {id} dropped: outbound queue full (client not reading)");
}

/// An encoded close frame.
pub fn close_frame(code: CloseCode, reason: &'static str) -> Frame {
    protocol::encode(WsFrame::close(Some(CloseFrame {
        code,
        reason: reason.into(),
    })))
}
