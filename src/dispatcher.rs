//! The dispatcher: one thread that owns who is online, and decides who hears
//! what.
//!
//! Every reader sends its events here over one channel, and this thread is
//! the only one that ever reads or changes the user map. That is why the map
//! needs no `Mutex`: ownership, not locking, keeps it consistent, and events
//! are handled one at a time in the order they arrived, which is also the
//! order every client receives the broadcasts in.
//!
//! The dispatcher never blocks on a client. Broadcasting is pushing one
//! shared, already-encoded frame into each recipient's `Outbox`; a client
//! whose queue is full is too slow, and is disconnected on the spot (close
//! 1008) instead of holding everyone else back.
//!
//! Broadcasts are batched: while more events are already waiting, the frames
//! of consecutive broadcasts are appended to one buffer (`pending`), and the
//! buffer is queued for every recipient once, when the channel runs dry or
//! the buffer is large. Under load, one push per recipient then carries many
//! messages; when idle, a message goes out as soon as it is handled, since
//! the channel is empty.
//!
//! A batch may span logins. `online` is in join order and a login only adds
//! at its end, so between two flushes the audience only grows: the users
//! present at the start of the batch get all of it, and a user who joined
//! midway gets the part from its own login on, a suffix of the same buffer
//! (`Segment`). In a login storm this is what keeps the cost of each login
//! from being a push to everyone. Anything that removes a user from
//! `online`, which would break the rule, flushes first.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, info, warn};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame as WsFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use crate::config::{
    HEARTBEAT_INTERVAL, INSIDE_FULLEST_OUTBOXES, INSIDE_RECENT_DROPS, MAX_EVENTS_PER_BATCH,
};
use crate::metrics::{CloseReason, FanoutClock, Metrics};
use crate::outbox::Outbox;
use crate::protocol::{self, Frame, Refusal, Request};
use crate::stats::{DispatcherView, DropView, Fullest, Limits, OutboxView, RecentDrops, now_ms};

/// Identifies a connection for its whole life; assigned by the accept loop.
pub type ConnId = u64;

/// What readers (and the server) tell the dispatcher.
pub enum Event {
    /// A WebSocket handshake completed; here is the way to reach the client.
    Connected { id: ConnId, outbox: Outbox },
    /// The client sent a valid request.
    Request { id: ConnId, request: Request },
    /// The connection is over, for `reason`. Sent exactly once per
    /// connection, by the reader, even when it panics.
    Disconnected { id: ConnId, reason: CloseReason },
    /// [metrics integration] `/api/stats` asks for the fullest outboxes and
    /// the recent drops.
    Stats { reply: Sender<DispatcherView> },
    /// The server is stopping: say goodbye (close 1001) to every client.
    Shutdown,
    /// Grace is over: shut every remaining socket down now.
    ForceClose,
}

/// The frames in `pending` from `start` on were broadcast while `audience`
/// users (the first `audience` of `online`) were logged in, or more.
struct Segment {
    start: usize,
    audience: usize,
    /// [metrics integration] Frames in `pending` before `start`.
    frames_before: usize,
}

/// A connected client, as the dispatcher sees it.
struct Client {
    outbox: Outbox,
    /// `Some` once logged in; only logged-in clients receive broadcasts.
    username: Option<String>,
}

pub struct Dispatcher {
    clients: HashMap<ConnId, Client>,
    /// Logged-in connections in join order: `active_users` lists them so.
    online: Vec<ConnId>,
    /// Lower-cased name → its connection, for case-insensitive uniqueness.
    names: HashMap<String, ConnId>,
    /// Set by `Shutdown`: latecomers are sent away at once.
    shutting_down: bool,
    /// Encoded frames for the logged-in clients, not yet queued.
    pending: Vec<u8>,
    /// Who gets which part of `pending`: where each audience size begins.
    segments: Vec<Segment>,
    /// `pending` is flushed once it holds this many bytes.
    batch_bytes: usize,
    /// [metrics integration] Frames in `pending`.
    pending_frames: usize,
    /// [metrics integration] What this server counts; when the pending
    /// chats arrived; the last drops; whether `/api/stats` shows names.
    metrics: Arc<Metrics>,
    fanout: FanoutClock,
    drops: RecentDrops,
    show_names: bool,
}

/// [metrics integration] Rooms are the lead's; this branch has one.
const ROOM: &str = "lobby";

impl Dispatcher {
    pub fn new(batch_bytes: usize, metrics: Arc<Metrics>, show_names: bool) -> Self {
        Dispatcher {
            pending_frames: 0,
            metrics,
            fanout: FanoutClock::default(),
            drops: RecentDrops::new(INSIDE_RECENT_DROPS),
            show_names,
            clients: HashMap::new(),
            online: Vec::new(),
            names: HashMap::new(),
            shutting_down: false,
            pending: Vec::new(),
            segments: Vec::new(),
            batch_bytes,
        }
    }

    /// Handles events until every sender is gone.
    pub fn run(mut self, events: Receiver<Event>) {
        loop {
            // [metrics integration] The wait is bounded so that an idle
            // dispatcher still beats its heartbeat (`/healthz`).
            let event = match events.recv_timeout(HEARTBEAT_INTERVAL) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    self.metrics.heartbeat();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.metrics.heartbeat();
            self.handle(event);
            let mut handled = 1;
            // Whatever else is already waiting joins the same batch.
            for event in events.try_iter().take(MAX_EVENTS_PER_BATCH) {
                self.handle(event);
                handled += 1;
            }
            self.flush();
            self.metrics.batch(handled);
        }
        debug!("dispatcher: all senders gone, stopping");
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Connected { id, outbox } => {
                if self.shutting_down {
                    outbox.close(close_frame(CloseCode::Away, "server shutting down"));
                }
                self.clients.insert(
                    id,
                    Client {
                        outbox,
                        username: None,
                    },
                );
            }
            Event::Request { id, request } => self.request(id, request),
            Event::Disconnected { id, reason } => {
                // [metrics integration] A slow consumer was recorded when
                // it was dropped; other drops are the reader's news.
                if reason.is_drop() && reason != CloseReason::SlowConsumer {
                    self.record_drop(id, reason);
                }
                self.log_out(id);
                self.clients.remove(&id);
            }
            Event::Stats { reply } => {
                let _ = reply.send(self.stats_view());
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
                let json = protocol::chat_json(&message, username);
                self.metrics.chat_broadcast(); // [metrics integration]
                self.fanout.arrived();
                self.broadcast(&json);
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

    /// Logs a connection in, or renames it if it already is.
    fn log_in(&mut self, id: ConnId, username: String) {
        let key = protocol::username_key(&username);
        if let Some(&holder) = self.names.get(&key)
            && holder != id
        {
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
        // No flush needed: a new user joins at the end of `online`, and a
        // rename keeps its place (see the module comment).
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        match client.username.replace(username.clone()) {
            Some(old) => {
                self.names.remove(&protocol::username_key(&old));
                info!("{old} is now {username}");
            }
            None => {
                self.online.push(id);
                info!("{username} joined ({} online)", self.online.len());
                self.count_users(); // [metrics integration]
            }
        }
        self.names.insert(key, id);
        let json = protocol::login_json(&username, self.active_users());
        self.broadcast(&json);
    }

    /// Takes a connection out of the chat, if it was in, and tells the rest.
    /// Safe to call twice: a user leaves exactly once.
    fn log_out(&mut self, id: ConnId) {
        if self.clients.get(&id).is_none_or(|c| c.username.is_none()) {
            return;
        }
        self.flush(); // positions in `online` are about to shift
        self.remove_from_chat(id);
    }

    /// Takes a logged-in client out of `online` and queues the news for the
    /// others. Callers have flushed `pending` already (`flush` itself calls
    /// this between batches).
    fn remove_from_chat(&mut self, id: ConnId) {
        let Some(username) = self.clients.get_mut(&id).and_then(|c| c.username.take()) else {
            return;
        };
        self.names.remove(&protocol::username_key(&username));
        self.online.retain(|&other| other != id);
        info!("{username} left ({} online)", self.online.len());
        self.count_users(); // [metrics integration]
        let json = protocol::disconnect_json(&username, self.active_users());
        // Not `broadcast`, whose size check could call `flush` from within
        // `flush`: the loop there sends this.
        self.append(&json);
    }

    fn active_users(&self) -> impl Iterator<Item = &str> {
        self.online
            .iter()
            .filter_map(|id| self.clients.get(id)?.username.as_deref())
    }

    /// Adds a message for every logged-in client to the pending batch.
    fn broadcast(&mut self, json: &[u8]) {
        self.append(json);
        if self.pending.len() >= self.batch_bytes {
            self.flush();
        }
    }

    fn append(&mut self, json: &[u8]) {
        let audience = self.online.len();
        if self.segments.last().is_none_or(|s| s.audience != audience) {
            self.segments.push(Segment {
                start: self.pending.len(),
                audience,
                frames_before: self.pending_frames,
            });
        }
        protocol::append_text_frame(&mut self.pending, json);
        self.pending_frames += 1;
    }

    /// Queues the pending batch for every logged-in client: one shared
    /// buffer, one push each, of the whole buffer or of the part broadcast
    /// since the client joined. Clients whose queue is full are dropped, and
    /// their departure is the next batch, for those who remain.
    fn flush(&mut self) {
        while !self.pending.is_empty() {
            let batch = Frame::from(std::mem::take(&mut self.pending));
            let segments = std::mem::take(&mut self.segments);
            let frames = std::mem::take(&mut self.pending_frames);
            let mut delivered = 0;
            let mut too_slow = Vec::new();
            for (position, id) in self.online.iter().enumerate() {
                // Audiences only grow, so the first segment that includes
                // this position starts this client's part.
                let first = segments.partition_point(|s| s.audience <= position);
                let (Some(segment), Some(client)) = (segments.get(first), self.clients.get(id))
                else {
                    continue;
                };
                if client.outbox.push(batch.slice(segment.start..)).is_err() {
                    too_slow.push(*id);
                } else {
                    delivered += frames - segment.frames_before;
                }
            }
            // [metrics integration]
            self.metrics.delivered(delivered as u64);
            self.fanout.queued_for_all(&self.metrics);
            for id in too_slow {
                self.drop_slow_client(id);
            }
        }
    }

    /// A client whose queue is full is not reading: close it (1008) without
    /// waiting for it, and tell the others it left.
    fn drop_slow_client(&mut self, id: ConnId) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        client.outbox.abandon(close_frame(
            CloseCode::Policy,
            "outbound queue full: client is reading too slowly",
        ));
        warn!("conn {id} dropped: outbound queue full (client not reading)");
        self.record_drop(id, CloseReason::SlowConsumer); // [metrics integration]
        self.remove_from_chat(id);
    }

    /// Sends a refusal to one client. If even that does not fit, the client
    /// is not reading, and is dropped like any other slow client.
    fn reply(&mut self, id: ConnId, refusal: Refusal) {
        self.metrics.refused(&refusal.error); // [metrics integration]
        // Everything broadcast before this refusal reaches the client first.
        self.flush();
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if client.outbox.push(refusal.to_frame()).is_err() {
            self.drop_slow_client(id);
        }
    }
}

/// [metrics integration] What only the dispatcher knows, for `/api/stats`
/// and `/metrics`.
impl Dispatcher {
    fn count_users(&self) {
        self.metrics.set_logged_in(self.online.len());
        self.metrics.set_rooms(usize::from(!self.online.is_empty()));
    }

    fn record_drop(&mut self, id: ConnId, reason: CloseReason) {
        let user = self.clients.get(&id).and_then(|c| c.username.clone());
        self.drops.record(DropView {
            conn: id,
            user: user.filter(|_| self.show_names),
            room: ROOM.to_string(),
            reason,
            at_ms: now_ms(),
        });
    }

    /// The fullest outboxes and the recent drops. One pass over the
    /// clients, two atomic loads each; names are cloned for the few kept.
    fn stats_view(&self) -> DispatcherView {
        let Some(limits) = self.clients.values().next().map(|c| c.outbox.limits()) else {
            return DispatcherView {
                outboxes: Vec::new(),
                drops: self.drops.newest_first(),
            };
        };
        let limits = Limits {
            messages: limits.0,
            bytes: limits.1,
        };
        let mut fullest = Fullest::new(INSIDE_FULLEST_OUTBOXES, limits);
        for (&conn, client) in &self.clients {
            let (messages, bytes) = client.outbox.queued();
            if fullest.wants(messages, bytes) {
                fullest.add(OutboxView {
                    conn,
                    user: client.username.clone().filter(|_| self.show_names),
                    room: ROOM.to_string(),
                    messages,
                    bytes,
                });
            }
        }
        DispatcherView {
            outboxes: fullest.into_views(),
            drops: self.drops.newest_first(),
        }
    }
}

/// An encoded close frame.
pub fn close_frame(code: CloseCode, reason: &'static str) -> Frame {
    protocol::encode(WsFrame::close(Some(CloseFrame {
        code,
        reason: reason.into(),
    })))
}
