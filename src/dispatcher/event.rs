//! What the dispatcher hears: one enum for every thread that talks to it.
//!
//! Readers, the server, the front door's questions, the archivist and the
//! cluster's threads all send on the one channel the dispatcher reads, so
//! their messages are one type, handled one at a time in arrival order.
//! The archivist and the cluster do not name this type (their `spawn` takes
//! any `E: From<…>`): the `From` impls below are how their news becomes an
//! event, so the store and Redis code never depend on the dispatcher.

use crossbeam_channel::Sender;

use crate::archivist::Archived;
use crate::archivist::moderation::Ruling;
use crate::cluster::{News, Reply};
use crate::ids::ConnId;
use crate::metrics::CloseReason;
use crate::metrics::stats::DispatcherView;
use crate::outbox::Outbox;
use crate::protocol::{Command, Refusal, Request, RoomSummary};

/// What readers (and the server) tell the dispatcher.
pub enum Event {
    /// A WebSocket handshake is under way for `room`; here is the way to
    /// reach the client. The dispatcher answers on `admitted`: `Ok` to go on
    /// with the upgrade, or the reason to refuse it (too many rooms; with
    /// sign-in on a room opens at a login instead, and this is always `Ok`).
    Connected {
        conn: ConnId,
        room: String,
        outbox: Outbox,
        admitted: Sender<Result<(), String>>,
    },
    /// The client sent a valid request.
    Request { conn: ConnId, request: Request },
    /// The connection is over, for `reason`. Sent exactly once per
    /// connection that sent `Connected`, by the reader, even when it panics.
    Disconnected { conn: ConnId, reason: CloseReason },
    /// `/api/stats` asks for the fullest outboxes and the recent drops.
    Stats { reply: Sender<DispatcherView> },
    /// `GET /api/rooms`: every room with a logged-in user, by name.
    ListRooms { reply: Sender<Vec<RoomSummary>> },
    /// The archivist's news: chats committed (to broadcast now), a room's
    /// history loaded, a reconnecting client's missed chats.
    Archived(Archived),
    /// The operator's API asks for a moderation action in `room`
    /// (`moderation/`); the ruling, or why not, comes back on `reply`.
    Moderate {
        room: String,
        command: Box<Command>,
        reply: Sender<Result<Ruling, Refusal>>,
    },
    /// The server is stopping: say goodbye (close 1001) to every client.
    Shutdown,
    /// Grace is over: shut every remaining socket down now.
    ForceClose,
    /// With `--redis`: what the cluster's threads hear and do.
    Cluster(News),
    /// Every connection has ended: return (and so let the archivist end).
    Stop,
}

impl From<Archived> for Event {
    fn from(news: Archived) -> Event {
        Event::Archived(news)
    }
}

impl From<Reply> for Event {
    fn from(reply: Reply) -> Event {
        match reply {
            Reply::Archived(news) => Event::Archived(news),
            Reply::Cluster(news) => Event::Cluster(news),
        }
    }
}
