//! Presence as changes: what a room tells the members who logged in with
//! `"presence":"changes"`, once per flush, instead of a whole list per
//! arrival.
//!
//! The tutorial's rule, every login sends the whole `active_users` to every
//! member, makes a login storm cost N³ bytes: the k-th login sends k names
//! to k members. A lecture of 10,000 would never finish logging in. A member
//! who asked for changes is instead sent:
//!
//! - the whole list once, in its own `login` answer (the tutorial's
//!   message, to it alone), made when the room flushes after its login, so
//!   it lists everyone who is in by then, and
//! - after that, one `{"type":"presence","room":…,"joined":[…],"left":[…]}`
//!   per flush of the room (normally one per batch of events), shared by
//!   every such member: the net change since the last one. A user who joins
//!   and leaves between two flushes is in neither list; one who leaves and
//!   another who takes the name are in both (apply `left` first, then append
//!   `joined`: the result is the room's list, in join order). A rename keeps
//!   its place in the join order, which `joined` and `left` cannot say, so a
//!   flush with a rename sends `{"type":"presence","room":…,"users":[…]}`,
//!   the whole list to replace the client's, instead.
//!
//! Bytes per user are then linear in N: one list, then every name once or
//! twice. The frame is encoded once per flush and shared, like a chat; the
//! one thing made per user is its own `login` answer, whose list is kept
//! encoded here (`items`) and grows by one name per join, so answering a
//! joiner copies it rather than writing every name again.
//!
//! Order with chats: a room's flush queues, for each such member, the
//! presence message before the batch's chats, so a chat from a joiner comes
//! after the message that announces it (and a chat from someone who left
//! during the batch after the one that says so).
//!
//! Both kinds of member are told here (`announce`), one change at a time
//! (`Told`): the room's own members' arrivals and departures on a single
//! node, and with `--redis` the changes the cluster published, as this
//! node's list of the room follows them (`roster.rs`). So a node of a
//! cluster builds the same messages as a single node, from its copy of the
//! list.
//!
//! The alternative rejected: a `presence` message per arrival, each with
//! one name. Bytes would be linear too, but a storm of 10,000 logins would
//! still be 10,000 messages to each of 10,000 members, 10⁸ pushes and
//! wake-ups; per flush they are as few as the dispatcher's batches.

use std::collections::HashSet;

use super::batch::Batch;
use crate::ids::ConnId;
use crate::protocol::{self, Frame};

/// One change to a room's list, as its members are told it.
#[derive(Debug)]
pub enum Told {
    Joined(String),
    Left(String),
    /// A rename keeps its place in the join order.
    Renamed {
        old: String,
        new: String,
    },
    /// The same names in another order (with `--redis`, after Redis lost
    /// its data and the nodes claimed their users again): the tutorial's
    /// members hear nothing, the others the whole list.
    Reordered,
}

/// A room's presence news for the members who asked for changes.
#[derive(Default)]
pub struct Presence {
    /// Who joined since the last flush (still in), in join order.
    joined: Vec<String>,
    /// Who left since the last flush and had been announced.
    left: Vec<String>,
    /// A change that `joined` and `left` cannot say (a rename): the next
    /// flush sends the whole list.
    reset: bool,
    /// Members owed the whole list: they logged in (or renamed) since the
    /// last flush, and their own `login` answer is made then.
    owed: HashSet<ConnId>,
    /// The room's list as JSON items (`protocol::name_items`), while it is
    /// known to be current; a departure or a rename makes it again.
    items: Option<Vec<u8>>,
}

/// What one flush sends the members who asked for changes.
pub struct Outgoing {
    /// The shared `presence` message, if anything changed.
    shared: Option<Frame>,
    /// Members owed the whole list, with the list's items.
    owed: HashSet<ConnId>,
    items: Vec<u8>,
    room: String,
}

impl Told {
    pub fn renamed(old: &str, new: &str) -> Told {
        Told::Renamed {
            old: old.to_string(),
            new: new.to_string(),
        }
    }
}

impl Presence {
    /// Tells both kinds of member about `news`: the tutorial's message,
    /// listing `users` (the room's list after it), is appended to `lists`
    /// (the batch for those members and their count) if there are any;
    /// the others hear it at the next flush.
    pub fn announce<'a>(
        &mut self,
        news: &Told,
        users: impl Iterator<Item = &'a str>,
        room: &str,
        lists: Option<(&mut Batch, usize)>,
    ) {
        let json = |name: &str, users| match news {
            Told::Left(_) => protocol::disconnect_json(name, users, room),
            _ => protocol::login_json(name, users, room),
        };
        let name = match news {
            Told::Joined(name) => {
                self.joined(name);
                name
            }
            Told::Left(name) => {
                self.left(name);
                name
            }
            Told::Renamed { old, new } => {
                self.renamed(old, new);
                new
            }
            Told::Reordered => {
                self.items = None;
                self.reset = true;
                return;
            }
        };
        if let Some((batch, audience)) = lists {
            batch.append(&json(name, users), audience);
        }
    }

    pub fn joined(&mut self, name: &str) {
        if let Some(items) = &mut self.items {
            protocol::push_name_item(items, name);
        }
        self.joined.push(name.to_string());
    }

    pub fn left(&mut self, name: &str) {
        self.items = None;
        match self.joined.iter().position(|n| n == name) {
            // Joined and left between two flushes: never announced.
            Some(at) => {
                self.joined.remove(at);
            }
            None => self.left.push(name.to_string()),
        }
    }

    pub fn renamed(&mut self, old: &str, new: &str) {
        self.items = None;
        match self.joined.iter_mut().find(|n| *n == old) {
            // Not announced yet under the old name: announce the new one.
            Some(name) => *name = new.to_string(),
            None => self.reset = true,
        }
    }

    /// A member that asked for changes is in (or renamed): it is owed the
    /// whole list at the next flush.
    pub fn owe(&mut self, id: ConnId) {
        self.owed.insert(id);
    }

    /// A member is gone: it is owed nothing.
    pub fn forget(&mut self, id: ConnId) {
        self.owed.remove(&id);
    }

    /// Whether the next flush has something to send.
    pub fn is_due(&self) -> bool {
        !self.owed.is_empty() || !self.joined.is_empty() || !self.left.is_empty() || self.reset
    }

    /// Makes this flush's messages. `users` is the room's list now (its
    /// own members; with `--redis` the cluster's, `roster.rs`), and
    /// `listening` whether any member asked for changes: if none did,
    /// nothing is made.
    pub fn take<'a>(
        &mut self,
        room: &str,
        users: impl Iterator<Item = &'a str>,
        listening: bool,
    ) -> Option<Outgoing> {
        if !self.is_due() {
            return None;
        }
        let joined = std::mem::take(&mut self.joined);
        let left = std::mem::take(&mut self.left);
        let reset = std::mem::take(&mut self.reset);
        let owed = std::mem::take(&mut self.owed);
        if !listening {
            return None;
        }
        if reset {
            self.items = None;
        }
        if self.items.is_none() && (reset || !owed.is_empty()) {
            self.items = Some(protocol::name_items(users));
        }
        let items = self.items.as_deref().unwrap_or_default();
        let shared = if reset {
            Some(protocol::users_json_with_items(room, items))
        } else if joined.is_empty() && left.is_empty() {
            None
        } else {
            let joined = joined.iter().map(String::as_str);
            Some(protocol::presence_changes_json(
                room,
                joined,
                left.iter().map(String::as_str),
            ))
        };
        let items = if owed.is_empty() {
            Vec::new()
        } else {
            items.to_vec()
        };
        Some(Outgoing {
            shared: shared.map(|json| protocol::text_frame(&json)),
            owed,
            items,
            room: room.to_string(),
        })
    }
}

impl Outgoing {
    /// What member `id`, in as `name`, is sent before the batch's chats:
    /// its own `login` answer with the whole list if it is owed one, else
    /// the shared message, if any.
    pub fn frame_for(&self, id: ConnId, name: &str) -> Option<Frame> {
        if self.owed.contains(&id) {
            return Some(protocol::login_frame_with_items(
                name,
                &self.items,
                &self.room,
            ));
        }
        self.shared.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: Option<Frame>) -> String {
        let frame = frame.expect("a frame");
        // A text frame's payload follows a 2-, 4- or 10-byte header.
        let start = match frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        String::from_utf8(frame[start..].to_vec()).unwrap()
    }

    #[test]
    fn joins_and_leaves_of_one_flush_are_one_message() {
        let mut p = Presence::default();
        p.joined("ann");
        p.joined("bob");
        p.left("cy");
        let out = p.take("r", ["ann", "bob"].into_iter(), true).unwrap();
        assert_eq!(
            text(out.frame_for(9, "dee")),
            r#"{"type":"presence","room":"r","joined":["ann","bob"],"left":["cy"]}"#
        );
        assert!(p.take("r", ["ann", "bob"].into_iter(), true).is_none());
    }

    #[test]
    fn a_join_and_leave_between_flushes_is_not_announced() {
        let mut p = Presence::default();
        p.joined("ann");
        p.left("ann");
        assert!(p.take("r", std::iter::empty(), true).is_none());
    }

    #[test]
    fn a_joiner_is_owed_the_whole_list_and_a_rename_resets() {
        let mut p = Presence::default();
        p.joined("ann");
        p.owe(1);
        let out = p.take("r", ["old", "ann"].into_iter(), true).unwrap();
        assert_eq!(
            text(out.frame_for(1, "ann")),
            r#"{"type":"login","user_joined":"ann","active_users":["old","ann"],"room":"r"}"#
        );
        p.renamed("old", "new");
        let out = p.take("r", ["new", "ann"].into_iter(), true).unwrap();
        assert_eq!(
            text(out.frame_for(9, "x")),
            r#"{"type":"presence","room":"r","users":["new","ann"]}"#
        );
    }
}
