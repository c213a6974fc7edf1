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
//!
//! This file routes. The rest are all `impl Dispatcher`: one owner, its
//! work in several files, each named for what it does:
//!
//! - `login.rs`: a login's life as one named state, from the handshake to
//!   the room (history first) and out again;
//! - `chats.rs`: a chat's trip, to its room's keeper and back to its
//!   audience;
//! - `keeper.rs`: the one seam between the dispatcher and whoever keeps a
//!   room's order (nobody, the archivist, or Redis);
//! - `cluster.rs`: what only Redis reports (`--redis`), and `roster.rs`:
//!   a room's users on every node, as this node follows them;
//! - `connections.rs`: a connection's arrival and departure, rooms
//!   appearing and going;
//! - `fanout.rs`: pushing to outboxes, batching, dropping the slow;
//! - `batch.rs`: a room's broadcasts waiting to be queued, shared;
//! - `presence.rs`: who came and went, for the clients that asked for
//!   changes rather than whole lists;
//! - `room.rs` and `history.rs`: a room's members and its recent chats,
//!   plain data the dispatcher owns;
//! - `inside.rs`: what the dispatcher tells `/inside`;
//! - `moderation/`: deletes, edits, mutes, kicks, bans and the room's
//!   mode, their trip through the keeper, and the room's standing rules.

mod batch;
mod chats;
mod cluster;
mod connections;
mod event;
mod fanout;
mod history;
mod inside;
mod keeper;
mod login;
mod moderation;
mod presence;
mod room;
mod roster;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chats::follow_set;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, warn};

use crate::config::{
    Config, HEARTBEAT_INTERVAL, HISTORY_MESSAGE_BYTES, IN_PLACE_MAX_BATCH_EVENTS,
    INSIDE_RECENT_DROPS, MAX_CATCH_UP_BYTES, MAX_EVENTS_PER_BATCH,
};
use crate::ids::ConnId;
use crate::metrics::stats::{DispatcherView, RecentDrops};
use crate::metrics::{CloseReason, FanoutClock, Metrics};
use crate::outbox::Outbox;
use crate::protocol::{self, Closing, Reason, Refusal, Request, RequestKind, RoomSummary};
pub use event::Event;
use history::Allowance;
pub use keeper::{ClusterLink, Keeper};
use login::LoginState;
use room::Room;

/// A chat text that makes the dispatcher panic, in builds with the
/// `fault-injection` feature: tests use it to show that the process then
/// exits rather than living on without a chat.
#[cfg(feature = "fault-injection")]
pub const DISPATCHER_PANIC_TRIGGER: &str = "__threadchat_fault_injection_dispatcher__";

/// A connected client, as the dispatcher sees it.
struct Client {
    outbox: Outbox,
    /// The room its WebSocket path named; fixed for the connection's life.
    room: String,
    /// Whether it counts among its room's connections, keeping the room
    /// open: from the handshake, or with sign-in on from its first
    /// verified login (`enter_room`).
    holds_room: bool,
    /// Where its login is (`login.rs`); only clients that are in receive
    /// broadcasts.
    login: LoginState,
    /// With sign-in, the (lower-cased) names the user's token follows.
    follows: Option<HashSet<String>>,
    /// With sign-in, its token's role (`moderation/`).
    role: protocol::Role,
    /// Closed by a moderator (kicked or banned): whatever else it sends
    /// before its socket ends is ignored.
    closed: bool,
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
    /// With sign-in on, a room opens at its first verified login rather
    /// than at a handshake, so that sockets without a token hold no room.
    rooms_at_login: bool,
    /// Who keeps the rooms' order and history: chats go there first and
    /// are broadcast when they come back ordered (`keeper.rs`).
    keeper: Keeper,
    /// Chats handed to the keeper and not yet reported back.
    unarchived: usize,
    /// `--history`, and how much history a login may be sent
    /// (`--history-max`, and bytes: see `history.rs`).
    history: usize,
    allowance: Allowance,
    /// `--mutual-follows`: chats reach mutual followers only (and history
    /// is not replayed, as it would reach beyond them).
    mutual_follows: bool,
    /// `--edit-window`, in seconds (`moderation/`).
    edit_window: u64,
    /// The server's counters; when the chats being fanned out arrived; the
    /// last drops, for `/inside`; whether `/api/stats` shows names.
    metrics: Arc<Metrics>,
    fanout: FanoutClock,
    drops: RecentDrops,
    show_names: bool,
    /// The last answer to `/api/stats` and when it was made (`inside.rs`).
    last_stats: Option<(Instant, DispatcherView)>,
    /// Logged-in users in every room, for the gauge.
    logged_in: usize,
}

impl Dispatcher {
    /// A dispatcher whose rooms' order is kept by `keeper`.
    pub fn new(config: &Config, keeper: Keeper, metrics: Arc<Metrics>) -> Self {
        Dispatcher {
            metrics,
            fanout: FanoutClock::default(),
            drops: RecentDrops::new(INSIDE_RECENT_DROPS),
            show_names: config.inside_names,
            last_stats: None,
            logged_in: 0,
            clients: HashMap::new(),
            rooms: HashMap::new(),
            dirty: Vec::new(),
            shutting_down: false,
            batch_bytes: config.broadcast_batch_bytes,
            max_rooms: config.max_rooms,
            rooms_at_login: false,
            keeper,
            unarchived: 0,
            history: config.history,
            allowance: Allowance {
                history: config.history,
                max: config.history_max,
                message_bytes: HISTORY_MESSAGE_BYTES,
                catch_up_bytes: MAX_CATCH_UP_BYTES.min(config.outbound_bytes / 2),
            },
            mutual_follows: config.mutual_follows,
            edit_window: config.edit_window,
        }
    }

    /// With sign-in on: rooms open at their first verified login, not at a
    /// handshake (`enter_room`).
    pub fn with_sign_in(mut self) -> Self {
        self.rooms_at_login = true;
        self
    }

    /// Handles events until told to stop. The wait for the next event is
    /// bounded, so that an idle dispatcher still beats its heartbeat (what
    /// `/healthz` checks: a dispatcher that stops beating is stuck).
    pub fn run(mut self, events: Receiver<Event>) {
        let mut stopping = false;
        while !stopping {
            let event = match events.recv_timeout(HEARTBEAT_INTERVAL) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    self.metrics.heartbeat();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.metrics.heartbeat();
            stopping = self.handle(event);
            let mut handled = 1;
            // Whatever else is already waiting joins the same batch.
            for event in events.try_iter().take(MAX_EVENTS_PER_BATCH) {
                stopping |= self.handle(event);
                handled += 1;
            }
            // A large batch means this thread is behind (full speed, or short
            // of CPU): its frames then go to writer threads, which the
            // scheduler serves side by side, rather than being written in
            // place one socket after another (`outbox/turn.rs`).
            self.metrics
                .set_dispatcher_behind(handled > IN_PLACE_MAX_BATCH_EVENTS);
            self.flush();
            self.metrics.batch(handled);
        }
        debug!("dispatcher: stopping");
    }

    /// Handles one event; true once it is `Stop`.
    fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::Connected {
                conn,
                room,
                outbox,
                admitted,
            } => self.connected(conn, room, outbox, admitted),
            Event::Request { conn, request } => self.request(conn, request),
            Event::Disconnected { conn: id, reason } => {
                // A slow consumer was recorded when it was dropped; other
                // drops are the reader's news.
                if reason.is_drop() && reason != CloseReason::SlowConsumer {
                    self.record_drop(id, reason);
                }
                self.disconnected(id);
            }
            Event::Stats { reply } => {
                let _ = reply.send(self.stats_answer());
            }
            Event::Archived(news) => self.archived(news),
            Event::Moderate {
                room,
                command,
                reply,
            } => self.moderate_for_operator(room, *command, reply),
            Event::Cluster(news) => self.cluster_news(news),
            Event::ListRooms { reply } => {
                // With Redis the whole cluster's rooms are there: the
                // courier answers.
                let Some(reply) = self.keeper.list_rooms(reply) else {
                    return false;
                };
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
                let goodbye = protocol::close_frame(&Closing::ShuttingDown);
                for client in self.clients.values() {
                    client.outbox.close(goodbye.clone());
                }
            }
            Event::ForceClose => {
                for client in self.clients.values() {
                    client.outbox.shutdown_socket();
                }
            }
            Event::Stop => return true,
        }
        false
    }

    fn request(&mut self, id: ConnId, request: Request) {
        let Some(client) = self.clients.get(&id).filter(|c| !c.closed) else {
            return; // already gone (dropped as too slow, or kicked)
        };
        let name = client.login.name();
        let parking = client.login.is_pending()
            && matches!(request, Request::Chat { .. } | Request::Disconnect);
        if parking {
            self.park(id, request);
            return;
        }
        match request {
            Request::Login(login) => self.log_in(id, login),
            #[cfg(feature = "fault-injection")]
            Request::Chat { message }
                if message.get("text").and_then(|t| t.as_str())
                    == Some(DISPATCHER_PANIC_TRIGGER) =>
            {
                panic!("fault injection: dispatcher panic requested");
            }
            Request::Chat { message } if name.is_some() => {
                let username = name.unwrap_or_default();
                if let Some(refusal) = self.chat_refusal(client, username) {
                    warn!("conn {id}: chat refused: {}", refusal.reason);
                    return self.reply(id, refusal);
                }
                debug!("conn {id}: chat from {username}");
                let json = protocol::chat_json(&message, username, &client.room);
                let room = client.room.clone();
                self.chat(id, room, json);
            }
            // Readers turn token logins into `Login`s; one that got here
            // anyway is not trusted.
            Request::TokenLogin { .. } => self.reply(
                id,
                Refusal::new(
                    Some(RequestKind::Login),
                    Reason::AuthenticationFailed,
                    "sign-in is off",
                ),
            ),
            Request::Disconnect if name.is_some() => self.log_out(id),
            Request::Moderate(command) => self.moderate(id, command),
            Request::Chat { .. } => self.refuse_not_logged_in(id, RequestKind::Chat),
            Request::Disconnect => self.refuse_not_logged_in(id, RequestKind::Disconnect),
        }
    }

    fn refuse_not_logged_in(&mut self, id: ConnId, kind: RequestKind) {
        let kind_text = kind.as_str();
        warn!("conn {id}: {kind_text} refused: not logged in");
        let details = format!("send {{\"type\":\"login\",\"username\":…}} before {kind_text}");
        self.reply(id, Refusal::new(Some(kind), Reason::NotLoggedIn, details));
    }
}
