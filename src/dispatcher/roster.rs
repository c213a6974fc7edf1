//! With `--redis`: a room's users on every node, as this node follows them.
//!
//! The cluster publishes presence as changes (`in` or `out` one name,
//! numbered in the room's order: `cluster/scripts.rs`), never the list. So
//! each node keeps the list itself, here, in the room that the dispatcher
//! alone owns, and the room builds from it what its members hear: the
//! tutorial's `login` and `disconnect` with the whole `active_users`, the
//! same bytes a single node makes, and the `presence` changes
//! (`presence.rs`). Every node hears one room's changes in one order (Redis
//! runs one script at a time, and delivers one channel in order), so every
//! node's list, and every message made from it, is the same.
//!
//! A node follows the numbers: each change is one more than the last. When
//! one is missing (the listener was away and came back, or a message was
//! lost), or when the room is first heard, the node asks Redis for the
//! whole list once (`Work::Roster`, answered in order with the changes) and
//! tells its members the difference: a `disconnect` for each name gone,
//! then a `login` for each name new, each with the list as it is after it.
//! The states of that, one per room:
//!
//! ```text
//!   Deaf ── subscribed ──▶ Asked ── roster ──▶ InStep(n) ── change n+1 ──▶ InStep(n+1)
//!                                                │  ▲
//!             change not n+1, or subscribed again │  │ roster
//!                                                ▼  │
//!                                                Behind
//! ```
//!
//! - `Deaf`: the room is new here and not yet subscribed; anything heard
//!   is from before (the room closed and opened again) and is ignored.
//! - `Asked`: the first roster is on its way. Changes heard meanwhile are
//!   in it, so they are ignored; this node's own logins wait (`hold`), so
//!   that a joiner's own `login` lists everyone already in.
//! - `InStep(n)`: every change up to `n` is in the list.
//! - `Behind`: a roster is on its way after a gap. Changes are applied as
//!   they come (a join of a name already listed, or a departure of one that
//!   is not, changes nothing), and the roster then corrects whatever was
//!   missed.
//!
//! The alternative rejected: the scripts publishing the whole list with
//! every change, for the nodes to relay as it is. Nothing to keep here, but
//! every login in a room of N then moves N names through Redis to every
//! node and through every node's parser: N² bytes for a storm of N.

use std::collections::{BTreeMap, HashMap};

use super::presence::Told;
use crate::cluster::Change;
use crate::ids::ConnId;

/// Where a room's list is with the cluster's (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Deaf,
    Asked,
    InStep(u64),
    Behind,
}

/// What the cluster said about a room's users.
pub enum Heard {
    /// A change, and its number.
    Change(u64, Change),
    /// The whole list, as asked, and the number of the last change in it.
    Roster(u64, Vec<String>),
}

/// What the dispatcher does next for a room, after it heard something.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// A change is missing: ask for the roster.
    AskRoster,
    /// The first roster is in: claim the names of these logins, held until
    /// now.
    Claim(Vec<ConnId>),
}

/// A room's users across the cluster, in join order.
pub struct Roster {
    state: State,
    /// The names by place: iterated, they are the list in join order.
    places: BTreeMap<u64, String>,
    /// Each name's place.
    place_of: HashMap<String, u64>,
    /// The place after the last: where the next join goes.
    next: u64,
    /// This node's logins waiting for the first roster (`Asked`).
    held: Vec<ConnId>,
}

impl Roster {
    pub fn new() -> Roster {
        Roster {
            state: State::Deaf,
            places: BTreeMap::new(),
            place_of: HashMap::new(),
            next: 0,
            held: Vec::new(),
        }
    }

    /// The names, in join order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.places.values().map(String::as_str)
    }

    /// Whether the list has been heard from the cluster (it may be behind).
    pub fn is_known(&self) -> bool {
        matches!(self.state, State::InStep(_) | State::Behind)
    }

    /// The listener hears the room now (again): whatever was published
    /// while it did not is missed, so the caller asks for the roster.
    pub fn subscribed(&mut self) {
        self.state = match self.state {
            State::Deaf | State::Asked => State::Asked,
            State::InStep(_) | State::Behind => State::Behind,
        };
    }

    /// Holds a login of connection `id` until the first roster, if it has
    /// not come yet (true); its name is claimed then (`Next::Claim`).
    pub fn hold(&mut self, id: ConnId) -> bool {
        if self.is_known() {
            return false;
        }
        self.held.push(id);
        true
    }

    /// Applies what was heard, calling `told` after each change to the list
    /// with the change and the list as it is then, for the members.
    pub fn hear(&mut self, heard: Heard, mut told: impl FnMut(&Told, &Roster)) -> Next {
        match (self.state, heard) {
            (State::Deaf, _) | (State::Asked, Heard::Change(..)) => Next::Nothing,
            (State::Asked, Heard::Roster(seq, names)) => {
                // Nobody here has heard a list yet: no difference to tell.
                self.replace(&names, |_, _| {});
                self.state = State::InStep(seq);
                Next::Claim(std::mem::take(&mut self.held))
            }
            (State::InStep(last), Heard::Change(seq, change)) => {
                let next = if seq == last + 1 {
                    self.state = State::InStep(seq);
                    Next::Nothing
                } else {
                    self.state = State::Behind;
                    Next::AskRoster
                };
                self.apply(change, &mut told);
                next
            }
            (State::Behind, Heard::Change(_, change)) => {
                self.apply(change, &mut told);
                Next::Nothing
            }
            (State::InStep(_) | State::Behind, Heard::Roster(seq, names)) => {
                self.replace(&names, told);
                self.state = State::InStep(seq);
                Next::Nothing
            }
        }
    }

    /// One change, applied so that a repeated or stale one changes nothing.
    fn apply(&mut self, change: Change, told: &mut impl FnMut(&Told, &Roster)) {
        let news = match change {
            Change::In { name, replacing } => {
                let was = replacing
                    .filter(|old| *old != name)
                    .and_then(|old| Some((self.take(&old)?, old)));
                if self.place_of.contains_key(&name) {
                    // Listed already (heard while behind): Redis put it
                    // last, as a join always is.
                    let at = self.take(&name).expect("listed");
                    let last = at + 1 == self.next && was.is_none();
                    self.put(name, None);
                    (!last).then_some(Told::Reordered)
                } else if let Some((at, old)) = was {
                    self.put(name.clone(), Some(at));
                    Some(Told::Renamed { old, new: name })
                } else {
                    self.put(name.clone(), None);
                    Some(Told::Joined(name))
                }
            }
            Change::Out { name } => self.take(&name).map(|_| Told::Left(name)),
        };
        if let Some(news) = news {
            told(&news, self);
        }
    }

    /// Takes a name out of the list; its place, if it was listed.
    fn take(&mut self, name: &str) -> Option<u64> {
        let at = self.place_of.remove(name)?;
        self.places.remove(&at);
        Some(at)
    }

    /// Lists a name at place `at`, or last.
    fn put(&mut self, name: String, at: Option<u64>) {
        let at = at.unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.place_of.insert(name.clone(), at);
        self.places.insert(at, name);
    }

    /// Makes the list `now`, telling the difference as the `disconnect`s
    /// and `login`s that take members from the list they heard to it: each
    /// name gone, in the old order, then each name new, in the new order,
    /// the list after each as it would be (the kept names in the new
    /// order, and the new names up to this one). Names kept in another
    /// order, or new names that come before kept ones (after Redis lost its
    /// data and the nodes claimed their users again, or a join missed while
    /// one heard later was applied), are `Reordered` before the joins.
    fn replace(&mut self, now: &[String], mut told: impl FnMut(&Told, &Roster)) {
        let is_now: HashMap<&str, u64> = now
            .iter()
            .enumerate()
            .map(|(at, name)| (name.as_str(), at as u64))
            .collect();
        let gone: Vec<String> = self
            .names()
            .filter(|name| !is_now.contains_key(name))
            .map(str::to_string)
            .collect();
        for name in gone {
            self.take(&name);
            told(&Told::Left(name), self);
        }
        // The kept names, each at its place in `now`. They are in order if
        // their order is the same and every new name comes after them: only
        // then do the new names append to the list as members know it.
        let kept: Vec<String> = self.places.values().cloned().collect();
        let places: Vec<u64> = kept.iter().map(|name| is_now[name.as_str()]).collect();
        let in_order = places.windows(2).all(|w| w[0] < w[1])
            && places
                .last()
                .is_none_or(|&last| last + 1 == places.len() as u64);
        self.places.clear();
        for name in kept {
            let at = is_now[name.as_str()];
            self.place_of.insert(name.clone(), at);
            self.places.insert(at, name);
        }
        self.next = now.len() as u64;
        if !in_order {
            told(&Told::Reordered, self);
        }
        for (at, name) in now.iter().enumerate() {
            if !self.place_of.contains_key(name) {
                self.put(name.clone(), Some(at as u64));
                told(&Told::Joined(name.clone()), self);
            }
        }
    }
}

/// The names presence messages list: `roster`'s with `--redis`, else the
/// room's `own` members'.
pub fn listed<'a>(
    roster: Option<&'a Roster>,
    own: impl Iterator<Item = &'a str> + 'a,
) -> Box<dyn Iterator<Item = &'a str> + 'a> {
    match roster {
        Some(roster) => Box::new(roster.names()),
        None => Box::new(own),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn join(name: &str) -> Change {
        Change::In {
            name: name.into(),
            replacing: None,
        }
    }

    fn leave(name: &str) -> Change {
        Change::Out { name: name.into() }
    }

    /// What members are told, each with the list after it.
    fn hear(roster: &mut Roster, heard: Heard) -> (Next, Vec<String>) {
        let mut seen = Vec::new();
        let next = roster.hear(heard, |told, roster| {
            let list: Vec<&str> = roster.names().collect();
            seen.push(format!("{told:?} {list:?}"));
        });
        (next, seen)
    }

    /// A roster in step at `seq` with `list`.
    fn known(seq: u64, list: &[&str]) -> Roster {
        let mut roster = Roster::new();
        roster.subscribed();
        hear(&mut roster, Heard::Roster(seq, names(list)));
        roster
    }

    #[test]
    fn changes_before_the_first_roster_are_in_it_and_logins_wait_for_it() {
        let mut roster = Roster::new();
        assert_eq!(
            hear(&mut roster, Heard::Roster(3, names(&["x"]))).0,
            Next::Nothing
        );
        roster.subscribed();
        assert!(roster.hold(7));
        assert_eq!(
            hear(&mut roster, Heard::Change(4, join("a"))).1,
            Vec::<String>::new()
        );
        let (next, told) = hear(&mut roster, Heard::Roster(4, names(&["z", "a"])));
        assert_eq!(next, Next::Claim(vec![7]));
        assert!(told.is_empty());
        assert!(!roster.hold(8));
        assert_eq!(roster.names().collect::<Vec<_>>(), ["z", "a"]);
    }

    #[test]
    fn numbered_changes_keep_the_join_order_and_a_rename_its_place() {
        let mut roster = known(0, &[]);
        for (seq, name) in [(1, "a"), (2, "b"), (3, "c")] {
            assert_eq!(
                hear(&mut roster, Heard::Change(seq, join(name))).0,
                Next::Nothing
            );
        }
        let (_, told) = hear(
            &mut roster,
            Heard::Change(
                4,
                Change::In {
                    name: "B".into(),
                    replacing: Some("b".into()),
                },
            ),
        );
        assert_eq!(told, [r#"Renamed { old: "b", new: "B" } ["a", "B", "c"]"#]);
        let (_, told) = hear(&mut roster, Heard::Change(5, leave("a")));
        assert_eq!(told, [r#"Left("a") ["B", "c"]"#]);
        let (_, told) = hear(&mut roster, Heard::Change(6, join("a")));
        assert_eq!(told, [r#"Joined("a") ["B", "c", "a"]"#]);
    }

    #[test]
    fn a_missing_number_asks_for_the_roster_which_tells_the_difference() {
        let mut roster = known(10, &["ann", "bob", "cy"]);
        // 11 and 12 (bob left, dee joined) were missed.
        let (next, told) = hear(&mut roster, Heard::Change(13, join("eve")));
        assert_eq!(next, Next::AskRoster);
        assert_eq!(told, [r#"Joined("eve") ["ann", "bob", "cy", "eve"]"#]);
        // Applied while behind: a repeat changes nothing.
        assert!(
            hear(&mut roster, Heard::Change(13, join("eve")))
                .1
                .is_empty()
        );
        assert!(
            hear(&mut roster, Heard::Change(9, leave("zed")))
                .1
                .is_empty()
        );
        let (next, told) = hear(
            &mut roster,
            Heard::Roster(13, names(&["ann", "cy", "dee", "eve"])),
        );
        assert_eq!(next, Next::Nothing);
        assert_eq!(
            told,
            [
                r#"Left("bob") ["ann", "cy", "eve"]"#,
                // dee comes before eve, whom members were told of last.
                r#"Reordered ["ann", "cy", "eve"]"#,
                r#"Joined("dee") ["ann", "cy", "dee", "eve"]"#,
            ]
        );
        assert_eq!(
            hear(&mut roster, Heard::Change(14, leave("ann"))).0,
            Next::Nothing
        );
        let mut roster = known(1, &["ann", "bob"]);
        roster.subscribed();
        let (_, told) = hear(&mut roster, Heard::Roster(3, names(&["bob", "cy"])));
        assert_eq!(
            told,
            [r#"Left("ann") ["bob"]"#, r#"Joined("cy") ["bob", "cy"]"#]
        );
    }

    #[test]
    fn the_difference_lists_new_names_in_the_new_order_and_says_when_kept_ones_moved() {
        let mut roster = known(1, &["ann", "bob", "cy"]);
        roster.subscribed();
        let (_, told) = hear(
            &mut roster,
            Heard::Roster(3, names(&["dee", "cy", "ann", "eve"])),
        );
        assert_eq!(
            told,
            [
                r#"Left("bob") ["ann", "cy"]"#,
                r#"Reordered ["cy", "ann"]"#,
                r#"Joined("dee") ["dee", "cy", "ann"]"#,
                r#"Joined("eve") ["dee", "cy", "ann", "eve"]"#,
            ]
        );
        // Joins go on after the roster's names.
        let (_, told) = hear(&mut roster, Heard::Change(4, join("fay")));
        assert_eq!(
            told,
            [r#"Joined("fay") ["dee", "cy", "ann", "eve", "fay"]"#]
        );
    }

    #[test]
    fn a_join_heard_again_while_behind_moves_the_name_last() {
        let mut roster = known(1, &["ann", "bob"]);
        roster.subscribed();
        let (_, told) = hear(&mut roster, Heard::Change(1, join("ann")));
        assert_eq!(told, [r#"Reordered ["bob", "ann"]"#]);
        assert!(
            hear(&mut roster, Heard::Change(2, join("ann")))
                .1
                .is_empty()
        );
    }
}
