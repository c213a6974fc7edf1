//! The listener: the thread that hears what the cluster publishes.
//!
//! A Redis connection that subscribes can do nothing else, so this thread
//! has one of its own. It subscribes to the channel of every room this node
//! has a connection in (the dispatcher says `Join` and `Leave`), and turns
//! each published line into an event: a chat, a presence change, a ruling
//! or a roster. It decides nothing: the dispatcher dedupes by id, keeps
//! the rooms' lists and routes.
//!
//! It cannot block on Redis forever, since the dispatcher's subscription
//! requests come over a channel: it reads with a short timeout and looks at
//! that channel between reads. The alternative, a wake-up message published
//! to itself through Redis, saves those idle wake-ups but makes a new room
//! wait on a round trip through Redis to be heard.
//!
//! A subscribed connection only reads, so a path that died without a word
//! would look like a quiet room forever. When it has heard nothing for
//! `REDIS_LISTEN_PING`, the listener pings Redis, and a ping not answered in
//! time counts as a broken connection.
//!
//! After it subscribes to a room it says `Subscribed`: from then on nothing
//! published there is missed, and the dispatcher reads the room's tail from
//! the stream. If the connection breaks it reconnects with backoff,
//! subscribes again, and says `Subscribed` again for every room, so the
//! dispatcher catches each room up from the stream (chats published while
//! the node was not listening are not lost to its clients).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{debug, info, warn};
use redis::{Connection, RedisError};

use super::link::{self, Outage, is_connection_error};
use super::scripts::Keys;
use super::{Change, ClusterConfig, News, Reply, Subscription};
use crate::archivist::StoredChat;
use crate::config::{REDIS_COMMAND_TIMEOUT, REDIS_LISTEN_PING, REDIS_LISTEN_POLL};
use crate::ids::ConnId;

pub struct Listener<E> {
    config: ClusterConfig,
    keys: Keys,
    /// `None` while Redis cannot be reached.
    con: Option<Connection>,
    events: Sender<E>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The rooms this node wants to hear.
    rooms: HashSet<String>,
}

/// How a turn of the loop ended.
enum Turn {
    /// The dispatcher is gone: stop.
    Done,
    /// The connection broke: reconnect.
    Lost(RedisError),
}

impl<E: From<Reply>> Listener<E> {
    pub fn new(
        config: ClusterConfig,
        keys: Keys,
        con: Connection,
        events: Sender<E>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Listener<E> {
        Listener {
            config,
            keys,
            con: Some(con),
            events,
            metrics,
            rooms: HashSet::new(),
        }
    }

    pub fn run(mut self, subscriptions: Receiver<Subscription>) {
        let mut outage = Outage::new();
        loop {
            let Some(mut con) = self.con.take() else {
                // Wait out the backoff on the dispatcher's channel, so that
                // rooms still come and go meanwhile.
                let deadline = Instant::now() + outage.backoff();
                loop {
                    match subscriptions.recv_deadline(deadline) {
                        Ok(change) => self.note(change),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    }
                }
                match link::open(&self.config.url, REDIS_COMMAND_TIMEOUT) {
                    Ok(con) => {
                        let outage = outage.over();
                        info!("redis listener: back after {outage:.1?}; subscribing again");
                        self.con = Some(con);
                    }
                    Err(e) => {
                        debug!("redis listener: still unreachable: {e}");
                        outage.retry_failed();
                    }
                }
                continue;
            };
            match self.listen(&mut con, &subscriptions) {
                Turn::Done => return,
                Turn::Lost(e) => {
                    if outage.lost() {
                        info!("redis listener: connection lost ({e}); reconnecting");
                    }
                    self.metrics.set_redis_up(false);
                }
            }
        }
    }

    /// A subscription change while there is no connection: remembered.
    fn note(&mut self, change: Subscription) {
        match change {
            Subscription::Join(room) => self.rooms.insert(room),
            Subscription::Leave(room) => self.rooms.remove(&room),
        };
    }

    /// Subscribes to every wanted room, then relays until the connection
    /// breaks or the dispatcher is gone.
    fn listen(&mut self, con: &mut Connection, subscriptions: &Receiver<Subscription>) -> Turn {
        let mut pubsub = con.as_pubsub();
        if let Err(e) = pubsub.set_read_timeout(Some(REDIS_LISTEN_POLL)) {
            return Turn::Lost(e);
        }
        for room in self.rooms.clone() {
            if let Err(e) = pubsub.subscribe(self.keys.channel(&room)) {
                return Turn::Lost(e);
            }
            self.send(News::Subscribed { room });
        }
        let mut heard = Instant::now();
        loop {
            loop {
                match subscriptions.try_recv() {
                    Ok(Subscription::Join(room)) => {
                        if let Err(e) = pubsub.subscribe(self.keys.channel(&room)) {
                            self.rooms.insert(room);
                            return Turn::Lost(e);
                        }
                        self.rooms.insert(room.clone());
                        self.send(News::Subscribed { room });
                    }
                    Ok(Subscription::Leave(room)) => {
                        self.rooms.remove(&room);
                        if let Err(e) = pubsub.unsubscribe(self.keys.channel(&room)) {
                            return Turn::Lost(e);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Turn::Done,
                }
            }
            match pubsub.get_message() {
                Ok(message) => {
                    heard = Instant::now();
                    let Some(room) = self.keys.room_of(message.get_channel_name()) else {
                        continue;
                    };
                    match parse(room, message.get_payload_bytes(), &self.config.node) {
                        Some(Line::News(news)) => self.send(news),
                        Some(Line::ForAnother) => {}
                        None => warn!("redis listener: an unreadable message on room {room}"),
                    }
                }
                Err(e) if e.is_timeout() => {
                    if heard.elapsed() >= REDIS_LISTEN_PING {
                        if let Err(e) = ping(&mut pubsub) {
                            return Turn::Lost(e);
                        }
                        heard = Instant::now();
                    }
                }
                Err(e) if is_connection_error(&e) => return Turn::Lost(e),
                Err(e) => warn!("redis listener: {e}"),
            }
        }
    }

    fn send(&self, news: News) {
        let _ = self.events.send(E::from(Reply::Cluster(news)));
    }
}

/// Asks Redis for a PONG, waiting up to `REDIS_COMMAND_TIMEOUT` for it
/// (messages that come first are kept for `get_message`). Any failure,
/// a timeout included, means the connection is to be replaced: a late
/// answer would be read as the next message.
fn ping(pubsub: &mut redis::PubSub<'_>) -> Result<(), RedisError> {
    pubsub.set_read_timeout(Some(REDIS_COMMAND_TIMEOUT))?;
    pubsub.ping::<redis::Value>()?;
    pubsub.set_read_timeout(Some(REDIS_LISTEN_POLL))
}

/// What a published line is to this node.
enum Line {
    News(News),
    /// A roster another node asked for.
    ForAnother,
}

/// A published line, as news: `c <node>/<conn> <id> <ts> <json>`,
/// `p <node>/<conn> <n> in|out <name>[ <old name>]`, `m <node>/0 <ruling>`
/// or `r <node>/0 <n> <names>`. `node` is this node's id: a presence
/// change about one of its own connections says which, and a roster is
/// only for the node that asked.
fn parse(room: &str, payload: &[u8], node: &str) -> Option<Line> {
    let (kind, rest) = word(payload)?;
    let (holder, rest) = word(rest)?;
    let holder = std::str::from_utf8(holder).ok()?;
    let (from, conn) = holder.rsplit_once('/')?;
    let conn: ConnId = conn.parse().ok()?;
    let room = room.to_string();
    let news = match kind {
        b"c" => {
            let (id, rest) = word(rest)?;
            let (ts, json) = word(rest)?;
            let chat = StoredChat {
                id: number(id)?,
                ts: number(ts)?,
                json: Bytes::copy_from_slice(json),
            };
            News::Chat { room, chat }
        }
        b"p" => {
            let (seq, rest) = word(rest)?;
            let (what, names) = word(rest)?;
            let mut names = serde_json::Deserializer::from_slice(names).into_iter::<String>();
            let name = names.next()?.ok()?;
            let change = match what {
                b"in" => Change::In {
                    name,
                    replacing: names.next().transpose().ok()?,
                },
                b"out" => Change::Out { name },
                _ => return None,
            };
            if names.next().is_some() {
                return None;
            }
            News::Presence {
                room,
                seq: number(seq)?,
                own: (from == node).then_some(conn),
                change,
            }
        }
        b"m" => {
            let ruling = crate::archivist::judge::from_wire(&room, rest)?;
            News::Ruling(Box::new(ruling))
        }
        b"r" if from != node => return Some(Line::ForAnother),
        b"r" => {
            let (seq, names) = word(rest)?;
            News::Roster {
                room,
                seq: number(seq)?,
                names: serde_json::from_slice(names).ok()?,
            }
        }
        _ => return None,
    };
    Some(Line::News(news))
}

/// The bytes before the first space, and those after it.
fn word(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = bytes.iter().position(|&b| b == b' ')?;
    Some((&bytes[..space], &bytes[space + 1..]))
}

fn number(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_and_presence_are_read_back() {
        let chat = parse("a", br#"c n1/7 12 1700000000123 {"text":"a b"}"#, "n2");
        assert!(matches!(chat, Some(Line::News(News::Chat { chat, .. }))
            if chat.id == 12 && chat.ts == 1_700_000_000_123 && &chat.json[..] == br#"{"text":"a b"}"#));
        let login = parse("a", br#"p n2/7 3 in "a b""#, "n2");
        assert!(matches!(
            login,
            Some(Line::News(News::Presence { seq: 3, own: Some(7), change: Change::In { name, replacing: None }, .. }))
            if name == "a b"
        ));
        let rename = parse("a", br#"p n1/7 4 in "new one" "old one""#, "n2");
        assert!(matches!(
            rename,
            Some(Line::News(News::Presence { own: None, change: Change::In { name, replacing: Some(old) }, .. }))
            if name == "new one" && old == "old one"
        ));
        let other = parse("a", br#"p n1/7 5 out "x""#, "n2");
        assert!(matches!(
            other,
            Some(Line::News(News::Presence { seq: 5, own: None, change: Change::Out { name }, .. }))
            if name == "x"
        ));
        let roster = parse("a", br#"r n2/0 9 ["x y","z"]"#, "n2");
        assert!(
            matches!(roster, Some(Line::News(News::Roster { seq: 9, names, .. }))
            if names == ["x y", "z"])
        );
        assert!(matches!(
            parse("a", br#"r n1/0 1 ["z"]"#, "n2"),
            Some(Line::ForAnother)
        ));
        assert!(parse("a", b"x n1/7 1", "n2").is_none());
        assert!(parse("a", b"c n1/x 1 2 {}", "n2").is_none());
        assert!(parse("a", br#"p n1/7 x in "a""#, "n2").is_none());
        assert!(parse("a", br#"p n1/7 1 in "a" "b" "c""#, "n2").is_none());
        assert!(parse("a", br#"p n1/7 1 out a"#, "n2").is_none());
    }
}
