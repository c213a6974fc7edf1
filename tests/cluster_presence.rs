//! Presence between nodes as changes: the scripts publish who came or went
//! (numbered), each node keeps the room's list, and its clients still get
//! the tutorial's exact `login` / `disconnect` frames, or the `presence`
//! changes they asked for, the same on every node.
//!
//! Real parts only: a `redis-server` per test (tests/common/redis.rs), the
//! real binary as nodes, blocking WebSocket clients, a TCP proxy to cut one
//! node off (tests/common/proxy.rs), and a plain Redis subscriber to count
//! what the cluster publishes.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::redis::RedisServer;
use common::{BinaryServer, Client, WAIT};
use serde_json::{Value, json};

/// Longest a cut-off node may take to hear its rooms again once mended.
const RECOVERY: Duration = Duration::from_secs(20);

/// The tutorial's presence frame, written out byte for byte as a single
/// node writes it: the same keys in the same order, no spaces.
fn tutorial_frame(kind: &str, who: &str, users: &[String], room: &str) -> String {
    let (who_key, quoted) = match kind {
        "login" => ("user_joined", serde_json::to_string(who).unwrap()),
        _ => ("user_left", serde_json::to_string(who).unwrap()),
    };
    let listed: Vec<String> = users
        .iter()
        .map(|n| serde_json::to_string(n).unwrap())
        .collect();
    format!(
        r#"{{"type":"{kind}","{who_key}":{quoted},"active_users":[{}],"room":{}}}"#,
        listed.join(","),
        serde_json::to_string(room).unwrap()
    )
}

/// How a client keeps the room's list from what it is sent.
enum Follower {
    /// Tutorial frames: each is checked to be exactly the single-node
    /// frame, and to be the list before it with one name added or taken.
    Tutorial,
    /// `presence` changes: remove `left`, append `joined`, or take `users`.
    Changes,
}

/// A client following a room's list.
struct Follow {
    client: Client,
    kind: Follower,
    room: String,
    list: Vec<String>,
    /// Every presence frame it was sent, as text.
    frames: Vec<String>,
    /// Whether a `login` may place its name among the others (a catch-up
    /// after a missed change lists names in Redis's order), rather than
    /// last.
    placed_anywhere: bool,
}

impl Follow {
    /// Logs in as `name` on `node` in `room`, hearing presence as `kind`;
    /// the login is sent, its answer read by `follow`.
    fn start(node: &BinaryServer, room: &str, name: &str, kind: Follower) -> Follow {
        let client = Client::connect_to(node.addr, &format!("/r/{room}"));
        Follow::new(client, kind, room).logging_in(name)
    }

    fn new(client: Client, kind: Follower, room: &str) -> Follow {
        Follow {
            client,
            kind,
            room: room.to_string(),
            list: Vec::new(),
            frames: Vec::new(),
            placed_anywhere: false,
        }
    }

    fn logging_in(mut self, name: &str) -> Follow {
        let login = match self.kind {
            Follower::Tutorial => json!({"type": "login", "username": name}),
            Follower::Changes => json!({"type": "login", "username": name, "presence": "changes"}),
        };
        self.client.send_json(login);
        self
    }

    /// Reads one frame and applies it; history is skipped, anything but
    /// presence fails.
    fn step(&mut self, deadline: Instant) -> bool {
        let Some(text) = self.client.recv_text_before(deadline) else {
            return false;
        };
        let message: Value = serde_json::from_str(&text).expect("JSON");
        let kind = message["type"].as_str().unwrap_or_default().to_string();
        if kind == "history" {
            return true;
        }
        let names = |key: &str| -> Vec<String> {
            message[key]
                .as_array()
                .unwrap_or_else(|| panic!("no {key} in {text}"))
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect()
        };
        match (&self.kind, kind.as_str()) {
            (_, "login") if self.frames.is_empty() => {
                // Its own login answer: the whole list.
                self.list = names("active_users");
            }
            (Follower::Tutorial, "login" | "disconnect") => {
                let who_key = if kind == "login" {
                    "user_joined"
                } else {
                    "user_left"
                };
                let who = message[who_key].as_str().unwrap().to_string();
                let now = names("active_users");
                let mut expected = self.list.clone();
                if kind == "login" {
                    expected.push(who.clone());
                } else {
                    expected.retain(|n| *n != who);
                }
                if self.placed_anywhere {
                    // The same names, with `who` in or out.
                    let mut sorted_now = now.clone();
                    sorted_now.sort();
                    expected.sort();
                    assert_eq!(sorted_now, expected, "{text} after {:?}", self.list);
                } else {
                    assert_eq!(now, expected, "{text} after {:?}", self.list);
                }
                self.list = now;
            }
            (Follower::Changes, "presence") => {
                if message["users"].is_array() {
                    self.list = names("users");
                } else {
                    let left = names("left");
                    self.list.retain(|n| !left.contains(n));
                    self.list.extend(names("joined"));
                }
            }
            _ => panic!("unexpected {text}"),
        }
        if matches!(self.kind, Follower::Tutorial) {
            let who = message["user_joined"]
                .as_str()
                .or(message["user_left"].as_str())
                .unwrap();
            assert_eq!(
                text,
                tutorial_frame(&kind, who, &self.list, &self.room),
                "not the single-node frame"
            );
        }
        self.frames.push(text);
        true
    }

    /// Follows until the list is `wanted`, within `within`.
    fn until(&mut self, wanted: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        while self.list != wanted {
            assert!(
                self.step(deadline),
                "list {:?} never became {wanted:?}; frames: {:?}",
                self.list,
                self.frames
            );
        }
    }

    /// Nothing more arrives for a moment (no second notice).
    fn quiet_for(&mut self, pause: Duration) {
        if let Some(text) = self.client.recv_text_before(Instant::now() + pause) {
            panic!("an extra frame: {text}");
        }
    }
}

#[test]
fn a_storm_on_two_nodes_ends_with_every_client_holding_the_same_complete_list() {
    const PER_NODE: usize = 30;
    let redis = RedisServer::start();
    let nodes = Arc::new(redis.start_nodes(2, &[]));
    let total = 2 * PER_NODE;
    let start = Arc::new(Barrier::new(total));
    let threads: Vec<_> = (0..total)
        .map(|i| {
            let (nodes, start) = (nodes.clone(), start.clone());
            std::thread::spawn(move || {
                let kind = if i % 4 < 2 {
                    Follower::Tutorial
                } else {
                    Follower::Changes
                };
                let name = format!("user{i:02}");
                let client = Client::connect_to(nodes[i % 2].addr, "/r/storm");
                start.wait();
                let mut follow = Follow::new(client, kind, "storm").logging_in(&name);
                let deadline = Instant::now() + RECOVERY;
                while follow.list.len() < total {
                    assert!(follow.step(deadline), "{name}: {:?}", follow.list);
                }
                let own: Value = serde_json::from_str(&follow.frames[0]).unwrap();
                assert_eq!(own["user_joined"], name.as_str(), "own login first");
                (name, follow)
            })
        })
        .collect();
    let followed: Vec<(String, Follow)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let (first, reference) = &followed[0];
    let mut everyone: Vec<String> = reference.list.clone();
    everyone.sort();
    let expected: Vec<String> = (0..total).map(|i| format!("user{i:02}")).collect();
    assert_eq!(everyone, expected, "complete");
    for (name, follow) in &followed {
        assert_eq!(follow.list, reference.list, "{name} and {first} differ");
        if matches!(follow.kind, Follower::Tutorial) {
            // Exactly one frame per user, its own first: nothing twice.
            assert_eq!(
                follow.frames.len(),
                total - own_place(follow, name),
                "{name}"
            );
        }
    }
}

/// Where `name` is in its final list: the users before it were listed in
/// its own login answer, each later one came in a frame of its own.
fn own_place(follow: &Follow, name: &str) -> usize {
    follow.list.iter().position(|n| n == name).unwrap()
}

/// A Redis, a node on it, and a node behind a proxy the test can cut.
fn node_and_one_behind_a_proxy() -> (RedisServer, Proxy, BinaryServer, BinaryServer) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.addr());
    let direct = redis.start_nodes(1, &[]).pop().unwrap();
    let url = proxy.url();
    let behind = BinaryServer::start(&["--redis", url.as_str()]);
    (redis, proxy, direct, behind)
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn a_node_cut_off_while_users_come_and_go_tells_its_clients_the_difference() {
    let (_redis, proxy, direct, behind) = node_and_one_behind_a_proxy();
    let mut watcher = Follow::start(&direct, "lab", "watcher", Follower::Tutorial);
    watcher.until(&["watcher".to_string()], WAIT);
    let mut tina = Follow::start(&behind, "lab", "tina", Follower::Tutorial);
    let mut chad = Follow::start(&behind, "lab", "chad", Follower::Changes);
    let mut list: Vec<String> = vec!["watcher".into(), "tina".into(), "chad".into()];
    watcher.until(&list, WAIT);
    tina.until(&list, WAIT);
    chad.until(&list, WAIT);
    let mut stayers = Vec::new();
    for name in names("u", 0..8) {
        stayers.push(Follow::start(&direct, "lab", &name, Follower::Changes));
        list.push(name);
        watcher.until(&list, WAIT);
    }
    tina.until(&list, WAIT);
    chad.until(&list, WAIT);

    // Cut off for less than a lease: tina and chad stay listed elsewhere.
    proxy.cut();
    for gone in stayers.drain(..4) {
        gone.client.vanish();
    }
    list.retain(|n| !names("u", 0..4).contains(n));
    watcher.until(&list, WAIT);
    let mut joiners = Vec::new();
    for name in names("v", 0..4) {
        joiners.push(Follow::start(&direct, "lab", &name, Follower::Tutorial));
        list.push(name);
        watcher.until(&list, WAIT);
    }
    proxy.mend();

    // The node hears the room again, asks for the list, and tells its
    // clients the difference: four departures, four arrivals, in order.
    tina.until(&list, RECOVERY);
    chad.until(&list, RECOVERY);
    let caught_up = &tina.frames[tina.frames.len() - 8..];
    for (frame, who) in caught_up
        .iter()
        .zip(names("u", 0..4).iter().chain(&names("v", 0..4)))
    {
        let message: Value = serde_json::from_str(frame).unwrap();
        let key = if who.starts_with('u') {
            "user_left"
        } else {
            "user_joined"
        };
        assert_eq!(message[key], who.as_str(), "{caught_up:?}");
    }
    // Once each: nothing more, and the next arrival is heard as usual.
    tina.quiet_for(Duration::from_secs(1));
    let _late = Follow::start(&direct, "lab", "late", Follower::Tutorial);
    list.push("late".into());
    for follow in [&mut watcher, &mut tina, &mut chad] {
        follow.until(&list, WAIT);
    }
    assert_eq!(
        tina.frames.last().unwrap(),
        &tutorial_frame("login", "late", &list, "lab")
    );
}

#[test]
fn a_change_whose_message_was_lost_is_found_by_its_number_and_told() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(2, &[]);
    let mut ann = Follow::start(&nodes[0], "lab", "ann", Follower::Tutorial);
    ann.placed_anywhere = true;
    ann.until(&["ann".to_string()], WAIT);
    let mut bob = Follow::start(&nodes[1], "lab", "bob", Follower::Changes);
    let list = vec!["ann".to_string(), "bob".to_string()];
    ann.until(&list, WAIT);
    bob.until(&list, WAIT);

    // A user claimed as the CLAIM script does, its message never published:
    // as if every node had missed it.
    let key = |what: &str| format!("threadchat:{{lab}}:{what}");
    let score: i64 = redis.command(&["INCR", &key("joins")]).unwrap();
    let _: i64 = redis
        .command(&["HSET", &key("users"), "ghost", "elsewhere/1 \"ghost\""])
        .unwrap();
    let _: i64 = redis
        .command(&["ZADD", &key("order"), &score.to_string(), "\"ghost\""])
        .unwrap();
    let _: i64 = redis.command(&["INCR", &key("presence")]).unwrap();

    // The next change comes numbered one too far: both nodes ask for the
    // list, and their clients are told of the ghost, in Redis's order.
    let _cy = Follow::start(&nodes[0], "lab", "cy", Follower::Tutorial);
    let list = ["ann", "bob", "ghost", "cy"].map(String::from);
    ann.until(&list, WAIT);
    bob.until(&list, WAIT);
    let told: Vec<Value> = ann.frames[2..]
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert_eq!(told.len(), 2, "{:?}", ann.frames);
    assert_eq!(told[0]["user_joined"], "cy");
    assert_eq!(told[1]["user_joined"], "ghost");
    ann.quiet_for(Duration::from_millis(500));
}

/// Logs `count` users (asking for changes) into `room`, alternating between
/// the nodes, one after another, while a plain Redis client subscribed to
/// the room's channel counts what is published. Returns the bytes of each
/// presence change (`p …` lines), in order.
fn published_per_join(
    redis: &RedisServer,
    nodes: &[BinaryServer],
    room: &str,
    count: usize,
) -> Vec<usize> {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(format!("threadchat:{{{room}}}")).unwrap();
    pubsub.set_read_timeout(Some(WAIT)).unwrap();
    let mut clients = Vec::new();
    for i in 0..count {
        let mut client = Client::connect_to(nodes[i % nodes.len()].addr, &format!("/r/{room}"));
        client.send_json(
            json!({"type": "login", "username": format!("u{i:04}"), "presence": "changes"}),
        );
        client.recv_until(|m| m["type"] == "login");
        clients.push(client);
    }
    let mut sizes = Vec::new();
    let mut rosters = 0;
    while sizes.len() < count {
        let message = pubsub.get_message().expect("a published line within WAIT");
        let payload = message.get_payload_bytes();
        if payload.starts_with(b"p ") {
            sizes.push(payload.len());
        } else if payload.starts_with(b"r ") {
            rosters += payload.len();
        }
    }
    println!("{room}: {count} joins, {rosters} bytes of rosters published");
    sizes
}

#[test]
fn what_a_join_publishes_does_not_grow_with_the_room() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(2, &[]);
    let small = published_per_join(&redis, &nodes, "small", 20);
    let large = published_per_join(&redis, &nodes, "large", 200);
    let mean = |sizes: &[usize]| sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    // The last ten joins of each: a whole list would be 10 times longer
    // in the large room (about 9 bytes a name).
    let (small_late, large_late) = (mean(&small[10..]), mean(&large[190..]));
    println!(
        "bytes published per join: {small_late:.1} with 20 users, {large_late:.1} with 200 \
         (all joins: {} and {} bytes)",
        small.iter().sum::<usize>(),
        large.iter().sum::<usize>()
    );
    assert!(
        large_late <= small_late * 1.2,
        "per join: {small_late} bytes at 20 users, {large_late} at 200"
    );
    assert!(large_late < 100.0, "{large_late} bytes for one join");
}
