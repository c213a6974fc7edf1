//! The seam between the dispatcher and whatever keeps a room's order.
//!
//! A chat needs an id, a place in its room's order and a place in the
//! room's history before anyone sees it, and the dispatcher must never wait
//! for a disk or a network to get them. So it hands the chat over and hears
//! it back as an event, ordered; the same for the room's history when the
//! room appears, and for a reconnecting client's `since`. Who does the
//! ordering is this module's one question, asked in one place:
//!
//! - `Nobody` (`--history 0`): the dispatcher broadcasts each chat as it
//!   comes, in the order its events arrive;
//! - `Archivist` (the default): the archivist thread commits chats to
//!   SQLite and hands them back (`Archived::Committed`);
//! - `Redis` (`--redis`): the courier runs one script per chat on Redis,
//!   and every node, this one included, hears the chat back from the
//!   listener (`News::Chat`). The names in a room are Redis's too: a login
//!   is *claimed* there and admitted when its change comes back, and a
//!   departure is *released*; the room's list is every node's
//!   (`roster.rs`).
//!
//! Moderation actions take the same way (`moderate`): judged and committed
//! by the archivist, or by a script on Redis whose ruling every node hears
//! back from its listener (`News::Ruling`), in the room's order.
//!
//! Everything the dispatcher does differently with Redis is a method here
//! or a branch of `cluster.rs` (the news only Redis sends). The alternative
//! rejected: `if self.cluster …` wherever the two differ, which spread one
//! feature over every file of the dispatcher, the rooms and the tails.

use crossbeam_channel::Sender;

use super::history::RecentHistory;
use crate::archivist::moderation::Action;
use crate::archivist::{Audience, Job};
use crate::cluster::{Subscription, Work};
use crate::config::RECENT_BYTES_PER_ROOM;
use crate::ids::ConnId;
use crate::protocol::RoomSummary;

/// With `--redis`, the dispatcher's ways to the cluster's threads.
pub struct ClusterLink {
    /// The courier: claims, releases, the resync, the room list.
    pub work: Sender<Work>,
    /// The listener: which rooms to hear.
    pub subscriptions: Sender<Subscription>,
}

/// Who keeps the rooms' order and history (see the module comment).
pub enum Keeper {
    Nobody,
    /// The archivist's queue.
    Archivist(Sender<Job>),
    Redis(RedisKeeper),
}

/// What the dispatcher holds of a cluster.
pub struct RedisKeeper {
    /// The courier's queue of store jobs (the archivist's jobs, answered
    /// the archivist's way).
    pub(super) jobs: Sender<Job>,
    pub(super) link: ClusterLink,
}

impl Keeper {
    /// The archivist keeps order, in its SQLite file.
    pub fn archivist(jobs: Sender<Job>) -> Keeper {
        Keeper::Archivist(jobs)
    }

    /// Redis keeps order, through the courier's `jobs` and `link`.
    pub fn redis(jobs: Sender<Job>, link: ClusterLink) -> Keeper {
        Keeper::Redis(RedisKeeper { jobs, link })
    }

    fn jobs(&self) -> Option<&Sender<Job>> {
        match self {
            Keeper::Nobody => None,
            Keeper::Archivist(jobs) => Some(jobs),
            Keeper::Redis(redis) => Some(&redis.jobs),
        }
    }

    /// A room appears: its tail, loading, if there is history to load.
    /// With Redis the room is heard first and loaded when the listener says
    /// it is subscribed (`News::Subscribed`), so that no chat falls between
    /// the load and the subscription.
    /// The tail holds up to `capacity` chats, and `RECENT_BYTES_PER_ROOM`.
    pub(super) fn room_opened(&self, room: &str, capacity: usize) -> Option<RecentHistory> {
        match self {
            Keeper::Nobody => return None,
            Keeper::Archivist(_) => self.load(room, capacity),
            Keeper::Redis(redis) => {
                let _ = redis
                    .link
                    .subscriptions
                    .send(Subscription::Join(room.to_string()));
            }
        }
        Some(RecentHistory::loading(capacity, RECENT_BYTES_PER_ROOM))
    }

    /// Asks for a room's newest `capacity` chats and last id; answered by
    /// `Archived::Loaded`.
    pub(super) fn load(&self, room: &str, capacity: usize) {
        if let Some(jobs) = self.jobs() {
            let _ = jobs.send(Job::Load {
                room: room.to_string(),
                recent: capacity,
            });
        }
    }

    /// The room's last connection has gone.
    pub(super) fn room_closed(&mut self, room: &str) {
        if let Keeper::Redis(redis) = self {
            let _ = redis
                .link
                .subscriptions
                .send(Subscription::Leave(room.to_string()));
        }
    }

    /// Whether a room's users are every node's, as the cluster publishes
    /// them (`roster.rs`), rather than its own members.
    pub(super) fn follows_cluster(&self) -> bool {
        matches!(self, Keeper::Redis(_))
    }

    /// Whether a login must be claimed before it is admitted (`claim`).
    pub(super) fn claims_names(&self) -> bool {
        matches!(self, Keeper::Redis(_))
    }

    /// Hands connection `conn`'s chat, sent to `audience`, over to be
    /// ordered and kept with its audience. If nobody keeps order, the chat
    /// comes straight back, for the dispatcher to broadcast now.
    pub(super) fn hand_over(
        &self,
        room: String,
        conn: ConnId,
        json: Vec<u8>,
        audience: Audience,
    ) -> Result<(), (String, Vec<u8>)> {
        let Some(jobs) = self.jobs() else {
            return Err((room, json));
        };
        let _ = jobs.send(Job::Append {
            room,
            conn,
            json,
            audience,
        });
        Ok(())
    }

    /// Hands a moderation action over to be judged and committed in its
    /// room's order (answered by `Archived::Moderated`); back if nobody
    /// keeps anything, for the dispatcher to refuse.
    pub(super) fn moderate(&self, action: Box<Action>) -> Result<(), Box<Action>> {
        match self.jobs() {
            Some(jobs) => {
                let _ = jobs.send(Job::Moderate(action));
                Ok(())
            }
            None => Err(action),
        }
    }

    /// Asks for the chats of `room` after `after`; answered by
    /// `Archived::SinceLoaded`.
    pub(super) fn ask_since(&self, room: &str, conn: ConnId, after: u64) {
        if let Some(jobs) = self.jobs() {
            let _ = jobs.send(Job::Since {
                room: room.to_string(),
                conn,
                after,
            });
        }
    }

    /// Claims `name` in `room` for `conn` (renaming it from `old`);
    /// answered by its change (`News::Presence`), or `News::Refused`.
    pub(super) fn claim(&self, room: &str, conn: ConnId, name: &str, old: Option<&str>) {
        if let Keeper::Redis(redis) = self {
            let _ = redis.link.work.send(Work::Claim {
                room: room.to_string(),
                conn,
                name: name.to_string(),
                old: old.map(str::to_string),
            });
        }
    }

    /// Asks for `room`'s list of users (with Redis), answered in order with
    /// its changes (`News::Roster`).
    pub(super) fn ask_roster(&self, room: &str) {
        if let Keeper::Redis(redis) = self {
            let _ = redis.link.work.send(Work::Roster {
                room: room.to_string(),
            });
        }
    }

    /// `conn` has left `room` as `name` (with Redis, which announces it).
    pub(super) fn release(&self, room: &str, conn: ConnId, name: String) {
        if let Keeper::Redis(redis) = self {
            let _ = redis.link.work.send(Work::Release {
                room: room.to_string(),
                conn,
                name,
            });
        }
    }

    /// `GET /api/rooms`: with Redis the whole cluster's rooms are there, and
    /// the courier answers; otherwise the reply comes back, for the
    /// dispatcher to answer from its own rooms.
    pub(super) fn list_rooms(
        &self,
        reply: Sender<Vec<RoomSummary>>,
    ) -> Option<Sender<Vec<RoomSummary>>> {
        match self {
            Keeper::Redis(redis) => {
                let _ = redis.link.work.send(Work::ListRooms { reply });
                None
            }
            _ => Some(reply),
        }
    }
}
