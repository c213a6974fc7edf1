//! Several threadchat nodes on one real Redis: three nodes are
//! one chat (presence, order, names, history), and a node or Redis itself
//! going away costs only what it must.
//!
//! Every test starts its own `redis-server` (tests/common/redis.rs) on a
//! free loopback port and its own nodes (the real binary, `--port 0`), and
//! stops them by PID. Chats are compared as the JSON each client received,
//! so "the same order everywhere" means the same objects, ids included.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::redis::RedisServer;
use common::{BinaryServer, Client, WAIT, eventually, http_get, users};
use serde_json::{Value, json};

/// The contract's bound for a dead node's users to be announced as gone.
const NODE_DEATH_NOTICE: Duration = Duration::from_secs(15);

/// How long the test keeps listening after an announcement that must come
/// once: more than one survivor check (every 2 s), so a second survivor
/// announcing it again would be seen.
const NO_SECOND_NOTICE: Duration = Duration::from_secs(4);

/// Longest the nodes may take to take chats again after Redis is back
/// (reconnect backoff up to 2 s, re-subscription, re-announcement).
const RECOVERY: Duration = Duration::from_secs(20);

/// Pause between a refused chat and its retry while Redis comes back.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

const UNAVAILABLE: &str = "chat is briefly unavailable";

/// A fresh client of `node` in `room`, logged in as `name` (its history
/// and its own login broadcast already read).
fn join(node: &BinaryServer, room: &str, name: &str) -> Client {
    let mut client = Client::connect_to(node.addr, &format!("/r/{room}"));
    client.login(name);
    client
}

/// The next message, if one comes before `deadline`; pings and pongs are
/// skipped. For "nothing more arrives" as much as for "this arrives in
/// time".
fn recv_before(client: &mut Client, deadline: Instant) -> Option<Value> {
    let text = client.recv_text_before(deadline)?;
    Some(serde_json::from_str(&text).expect("server sent invalid JSON"))
}

/// Reads until the chat `text` arrives, returning everything read, that
/// chat last.
fn read_through_chat(client: &mut Client, text: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = client.recv_json();
        let done = message["type"] == "chat" && message["text"] == text;
        seen.push(message);
        if done {
            return seen;
        }
    }
}

/// A message in a few words, for comparing whole sequences: presence with
/// its user list, chats with sender and text (ids are compared apart).
fn summary(message: &Value) -> String {
    match message["type"].as_str() {
        Some("login") => format!(
            "login {} {:?}",
            message["user_joined"].as_str().unwrap_or("?"),
            users(message)
        ),
        Some("disconnect") => format!(
            "disconnect {} {:?}",
            message["user_left"].as_str().unwrap_or("?"),
            users(message)
        ),
        Some("chat") => format!(
            "chat {}: {}",
            message["username"].as_str().unwrap_or("?"),
            message["text"].as_str().unwrap_or("?")
        ),
        _ => message.to_string(),
    }
}

/// The chats among `messages`.
fn chats(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "chat")
        .cloned()
        .collect()
}

fn id(chat: &Value) -> u64 {
    chat["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("a chat without an id: {chat}"))
}

/// `GET path` on a node: the status and the body as JSON.
fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// `/api/rooms` as (name, users) pairs, in the order given.
fn room_counts(addr: SocketAddr) -> Vec<(String, u64)> {
    let (status, body) = get_json(addr, "/api/rooms");
    assert_eq!(status, 200, "/api/rooms answered {status}: {body}");
    body["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("/api/rooms without rooms: {body}"))
        .iter()
        .map(|room| {
            (
                room["name"].as_str().unwrap_or("?").to_string(),
                room["users"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[test]
fn the_harness_redis_answers_stops_and_restarts_empty_on_the_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert_eq!(
        redis.command::<String>(&["SET", "threadchat-test", "kept?"]),
        Ok("OK".into())
    );
    assert_eq!(redis.keys("*"), ["threadchat-test"]);
    redis.stop();
    assert!(
        redis.command::<String>(&["PING"]).is_err(),
        "stopped, yet it answers"
    );
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command::<String>(&["PING"]), Ok("PONG".into()));
    assert_eq!(redis.keys("*"), Vec::<String>::new(), "data survived");
    let pid = redis.pid().expect("running");
    drop(redis);
    assert!(
        eventually(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "redis-server {pid} outlived its RedisServer"
    );
}

#[test]
fn three_nodes_are_one_room_chat_and_presence_reach_every_node_exactly_once() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(3, &[]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // Joins alternate between nodes; each waits for its own broadcast, so
    // the join order is this order.
    let mut alice = join(a, "lab", "alice");
    let mut bea = join(b, "lab", "bea");
    let mut cid = join(c, "lab", "cid");
    let mut dora = join(b, "lab", "dora");
    let mut eve = Client::connect_to(c.addr, "/r/lab");
    let joined = eve.login("eve");
    assert_eq!(users(&joined), ["alice", "bea", "cid", "dora", "eve"]);
    assert_eq!(joined["room"], "lab", "{joined}");

    alice.chat("hello from A");
    // dora leaves by saying so, after she has the chat; eve by vanishing,
    // after she has seen dora go.
    read_through_chat(&mut dora, "hello from A");
    dora.send_json(json!({"type": "disconnect", "username": "dora"}));
    let mut eve_saw = read_through_chat(&mut eve, "hello from A");
    eve_saw.push(eve.recv_until(|m| m["type"] == "disconnect"));
    eve.vanish();
    // alice closes the test once eve's departure reached her.
    let mut alice_saw = Vec::new();
    loop {
        let message = alice.recv_json();
        let done = message["type"] == "disconnect" && message["user_left"] == "eve";
        alice_saw.push(message);
        if done {
            break;
        }
    }
    alice.chat("the end");
    alice_saw.extend(read_through_chat(&mut alice, "the end"));
    let bea_saw = read_through_chat(&mut bea, "the end");
    let cid_saw = read_through_chat(&mut cid, "the end");

    let everything = [
        "login bea [\"alice\", \"bea\"]",
        "login cid [\"alice\", \"bea\", \"cid\"]",
        "login dora [\"alice\", \"bea\", \"cid\", \"dora\"]",
        "login eve [\"alice\", \"bea\", \"cid\", \"dora\", \"eve\"]",
        "chat alice: hello from A",
        "disconnect dora [\"alice\", \"bea\", \"cid\", \"eve\"]",
        "disconnect eve [\"alice\", \"bea\", \"cid\"]",
        "chat alice: the end",
    ];
    let summaries = |seen: &[Value]| seen.iter().map(summary).collect::<Vec<_>>();
    assert_eq!(summaries(&alice_saw), everything, "node A");
    assert_eq!(summaries(&bea_saw), everything[1..], "node B");
    assert_eq!(summaries(&cid_saw), everything[2..], "node C");
    assert_eq!(summaries(&eve_saw), everything[4..6], "node C, eve");
    for message in alice_saw.iter().chain(&bea_saw).chain(&cid_saw) {
        assert_eq!(message["room"], "lab", "{message}");
    }
    // The same chat is the same object (id, ts) on every node.
    let hello = |seen: &[Value]| chats(seen)[0].clone();
    assert_eq!(hello(&alice_saw), hello(&bea_saw));
    assert_eq!(hello(&alice_saw), hello(&cid_saw));
    assert_eq!(hello(&alice_saw), hello(&eve_saw));
}

#[test]
fn concurrent_senders_on_all_nodes_every_client_sees_the_same_sequence() {
    const PER_SENDER: usize = 150;
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(3, &["--rate-limit", "0"]);
    // On each node a sender and a listener; all logged in before anyone
    // sends, so every client is there for every chat.
    let mut clients = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        clients.push((
            format!("sender{n}"),
            true,
            join(node, "race", &format!("sender{n}")),
        ));
        clients.push((
            format!("listener{n}"),
            false,
            join(node, "race", &format!("listener{n}")),
        ));
    }
    let total = 3 * PER_SENDER;
    let start = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|(name, sends, mut client)| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                if sends {
                    for i in 0..PER_SENDER {
                        client.chat(&format!("{name} {i}"));
                    }
                }
                let mut received = Vec::new();
                while received.len() < total {
                    let message = client.recv_json();
                    match message["type"].as_str() {
                        Some("chat") => received.push(message),
                        Some("login") => {}
                        _ => panic!("{name} got {message}"),
                    }
                }
                (name, received)
            })
        })
        .collect();
    let seen: Vec<(String, Vec<Value>)> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread failed"))
        .collect();

    let (first_name, first) = &seen[0];
    // One order, strictly increasing ids, every chat once, each sender's
    // chats in the order it sent them.
    for pair in first.windows(2) {
        assert!(id(&pair[0]) < id(&pair[1]), "ids out of order: {pair:?}");
    }
    let mut next = HashMap::new();
    for chat in first {
        let (sender, i) = chat["text"].as_str().unwrap().rsplit_once(' ').unwrap();
        let expected = next.entry(sender.to_string()).or_insert(0usize);
        assert_eq!(i.parse::<usize>().unwrap(), *expected, "{chat}");
        assert_eq!(chat["username"], sender, "{chat}");
        *expected += 1;
    }
    assert_eq!(next.len(), 3);
    for (name, received) in &seen[1..] {
        let differs = first.iter().zip(received).position(|(x, y)| x != y);
        assert!(
            differs.is_none(),
            "{name} and {first_name} differ at chat {}: {} vs {}",
            differs.unwrap(),
            received[differs.unwrap()],
            first[differs.unwrap()]
        );
    }
}

#[test]
fn a_name_taken_on_another_node_is_refused_ignoring_case() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(3, &[]);
    let mut walter = join(&nodes[0], "lab", "Walter");

    let mut impostor = Client::connect_to(nodes[1].addr, "/r/lab");
    impostor.send_json(json!({"type": "login", "username": "wALTER"}));
    let refusal = impostor.recv_until(|m| m["type"] != "history");
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert_eq!(refusal["request"], "login", "{refusal}");
    assert_eq!(refusal["error"], "username is taken", "{refusal}");

    // Names are per room, across nodes as on one.
    join(&nodes[2], "elsewhere", "walter");

    // Once Walter leaves, his name is free on every node; the refused
    // attempt announced nothing, so the next thing Walter's room hears is
    // the new login.
    let mut maria = join(&nodes[2], "lab", "maria");
    assert_eq!(
        summary(&walter.recv_json()),
        "login maria [\"Walter\", \"maria\"]"
    );
    walter.send_json(json!({"type": "disconnect", "username": "Walter"}));
    assert_eq!(summary(&maria.recv_json()), "disconnect Walter [\"maria\"]");
    impostor.login("walter");
    assert_eq!(
        summary(&maria.recv_json()),
        "login walter [\"maria\", \"walter\"]"
    );
}

#[test]
fn a_killed_node_s_users_leave_every_other_node_once_within_15_s() {
    let redis = RedisServer::start();
    let mut nodes = redis.start_nodes(3, &[]);
    let mut alice = join(&nodes[0], "lab", "alice");
    let mut bob = join(&nodes[1], "lab", "bob");
    let _carol = join(&nodes[2], "lab", "carol");
    let _dave = join(&nodes[2], "lab", "dave");
    // Both survivors know everyone before the kill.
    alice.recv_until(|m| m["user_joined"] == "dave");
    bob.recv_until(|m| m["user_joined"] == "dave");

    nodes.pop().unwrap().kill_9();
    let killed = Instant::now();

    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let mut gone = Vec::new();
        let deadline = killed + NODE_DEATH_NOTICE;
        while gone.len() < 2 {
            let Some(message) = recv_before(client, deadline) else {
                panic!(
                    "{name}: after {:?}, only these left: {gone:?}",
                    killed.elapsed()
                );
            };
            assert_eq!(message["type"], "disconnect", "{name} got {message}");
            gone.push(message);
        }
        let mut left: Vec<_> = gone.iter().map(|m| m["user_left"].clone()).collect();
        left.sort_by_key(|name| name.to_string());
        assert_eq!(left, [json!("carol"), json!("dave")], "{name}: {gone:?}");
        assert_eq!(users(&gone[1]), ["alice", "bob"], "{name}: {}", gone[1]);
    }
    // Exactly once: a while longer (more than one survivor check), nothing.
    let quiet_until = Instant::now() + NO_SECOND_NOTICE;
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        if let Some(message) = recv_before(client, quiet_until) {
            panic!("{name} got a second notice: {message}");
        }
    }
    alice.chat("still here");
    assert_eq!(summary(&alice.recv_json()), "chat alice: still here");
    assert_eq!(summary(&bob.recv_json()), "chat alice: still here");
    for node in &nodes {
        let mut last = Vec::new();
        let counted = eventually(WAIT, || {
            last = room_counts(node.addr);
            last == [("lab".to_string(), 2)]
        });
        assert!(counted, "/api/rooms after the kill: {last:?}");
    }
}

/// A Redis, `direct` nodes on it, and one more node that reaches it
/// through a proxy the test can break (`tests/common/proxy.rs`).
fn nodes_and_one_behind_a_proxy(
    direct: usize,
) -> (RedisServer, Proxy, Vec<BinaryServer>, BinaryServer) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.addr());
    let nodes = redis.start_nodes(direct, &[]);
    let url = proxy.url();
    let behind = BinaryServer::start(&["--redis", url.as_str()]);
    (redis, proxy, nodes, behind)
}

#[test]
fn a_node_cut_off_from_redis_is_announced_gone_elsewhere_once_and_back_when_mended() {
    let (_redis, proxy, nodes, cut_node) = nodes_and_one_behind_a_proxy(2);
    let mut alice = join(&nodes[0], "lab", "alice");
    let mut bob = join(&nodes[1], "lab", "bob");
    let mut carol = join(&cut_node, "lab", "carol");
    alice.recv_until(|m| m["user_joined"] == "carol");
    bob.recv_until(|m| m["user_joined"] == "carol");

    // The path between carol's node and Redis breaks; the node lives on.
    proxy.cut();
    let cut = Instant::now();
    carol.chat("is anyone there?");
    let refusal = carol.recv_json();
    assert_eq!(refusal["type"], "error", "carol got {refusal}");
    assert_eq!(refusal["error"], UNAVAILABLE, "carol got {refusal}");

    // The others hear that carol left, within the bound, once each.
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let Some(message) = recv_before(client, cut + NODE_DEATH_NOTICE) else {
            panic!("{name}: carol not announced gone after {:?}", cut.elapsed());
        };
        assert_eq!(
            summary(&message),
            "disconnect carol [\"alice\", \"bob\"]",
            "{name}"
        );
    }
    let quiet_until = Instant::now() + NO_SECOND_NOTICE;
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        if let Some(message) = recv_before(client, quiet_until) {
            panic!("{name} got a second notice: {message}");
        }
    }
    // Carol's connection was kept all along: her node still answers her.
    carol.chat("still cut off?");
    let refusal = carol.recv_json();
    assert_eq!(refusal["error"], UNAVAILABLE, "carol got {refusal}");

    // Mended: the node announces carol again and her chats cross again.
    proxy.mend();
    let mut seen = Vec::new();
    let (taken, _refused) = chat_until_taken(&mut carol, "carol", "back again", &mut seen);
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let got: Vec<String> = read_through_chat(client, &taken)
            .iter()
            .map(summary)
            .collect();
        assert_eq!(
            got,
            [
                "login carol [\"alice\", \"bob\", \"carol\"]".to_string(),
                format!("chat carol: {taken}"),
            ],
            "{name}"
        );
    }
    alice.chat("welcome back");
    let heard = read_through_chat(&mut carol, "welcome back");
    assert_eq!(
        summary(heard.last().unwrap()),
        "chat alice: welcome back",
        "carol: {heard:?}"
    );
}

/// The path to Redis breaks after a login's claim was done there and
/// before the node heard its answer: the login was announced, so the user
/// is in, and stays in. (Found as a flaky run of the test below: the cut
/// came while the claim's answer was still on its way.)
#[test]
fn a_login_whose_claims_answer_is_lost_stays_in() {
    let (_redis, proxy, nodes, cut_node) = nodes_and_one_behind_a_proxy(1);
    let mut alice = join(&nodes[0], "lab", "alice");
    proxy.lose_answer_to(b"carol");
    // Admitted when the cluster's `login` comes back by the listener,
    // which the lost answer does not hold up.
    let mut carol = join(&cut_node, "lab", "carol");
    alice.recv_until(|m| m["user_joined"] == "carol");

    proxy.cut();
    proxy.mend();
    // Carol is still in: her chats are refused only while the node is
    // away from Redis, and then taken; nobody saw her leave.
    let mut seen = Vec::new();
    let (taken, _refused) = chat_until_taken(&mut carol, "carol", "still here", &mut seen);
    assert_eq!(
        seen.iter().map(summary).collect::<Vec<_>>(),
        [format!("chat carol: {taken}")],
        "carol heard something else"
    );
    let got: Vec<String> = read_through_chat(&mut alice, &taken)
        .iter()
        .map(summary)
        .collect();
    assert_eq!(got, [format!("chat carol: {taken}")], "alice heard more");
}

#[test]
fn a_node_cut_off_briefly_tells_its_users_who_came_and_went_meanwhile() {
    let (_redis, proxy, nodes, cut_node) = nodes_and_one_behind_a_proxy(2);
    let mut alice = join(&nodes[0], "lab", "alice");
    let bob = join(&nodes[1], "lab", "bob");
    let mut carol = join(&cut_node, "lab", "carol");
    alice.recv_until(|m| m["user_joined"] == "carol");

    // Shorter than the lease: carol stays in the room for everyone else.
    proxy.cut();
    carol.chat("hello?");
    assert_eq!(carol.recv_json()["error"], UNAVAILABLE);
    drop(bob);
    assert_eq!(
        summary(&alice.recv_json()),
        "disconnect bob [\"alice\", \"carol\"]"
    );
    let _dave = join(&nodes[1], "lab", "dave");
    assert_eq!(
        summary(&alice.recv_json()),
        "login dave [\"alice\", \"carol\", \"dave\"]"
    );
    proxy.mend();

    // Carol's node hears the room again and tells her what she missed,
    // in order, once.
    let deadline = Instant::now() + RECOVERY;
    let mut missed = Vec::new();
    while missed.len() < 2 {
        let Some(message) = recv_before(&mut carol, deadline) else {
            panic!("carol heard only {missed:?} within {RECOVERY:?}");
        };
        missed.push(summary(&message));
    }
    assert_eq!(
        missed,
        [
            "disconnect bob [\"alice\", \"carol\"]",
            "login dave [\"alice\", \"carol\", \"dave\"]",
        ]
    );
    let mut seen = Vec::new();
    let (taken, _refused) = chat_until_taken(&mut carol, "carol", "back", &mut seen);
    assert_eq!(
        seen.iter().map(summary).collect::<Vec<_>>(),
        [format!("chat carol: {taken}")],
        "carol heard something twice"
    );
    // The others saw nothing of it: carol never left for them.
    let got = read_through_chat(&mut alice, &taken);
    assert_eq!(
        got.iter().map(summary).collect::<Vec<_>>(),
        [format!("chat carol: {taken}")]
    );
}

#[test]
fn a_node_whose_redis_connections_die_silently_hears_its_rooms_again() {
    let (_redis, proxy, nodes, behind) = nodes_and_one_behind_a_proxy(1);
    let direct = &nodes[0];
    let mut alice = join(direct, "lab", "alice");
    let mut carol = join(&behind, "lab", "carol");
    alice.recv_until(|m| m["user_joined"] == "carol");
    alice.chat("before");
    assert_eq!(summary(&alice.recv_json()), "chat alice: before");
    assert_eq!(summary(&carol.recv_json()), "chat alice: before");

    // Redis loses the node's connections; the node's ends stay open and
    // silent, so nothing tells its listener that it listens to nobody.
    proxy.forget();
    alice.chat("while you were away");
    assert_eq!(
        summary(&alice.recv_json()),
        "chat alice: while you were away"
    );

    // Carol's node finds out on its own and catches the room up: she gets
    // the chat she missed, once, and then chat as usual, both ways.
    let deadline = Instant::now() + RECOVERY;
    let Some(missed) = recv_before(&mut carol, deadline) else {
        panic!("carol never got the chat sent after the connections died");
    };
    assert_eq!(summary(&missed), "chat alice: while you were away");
    let mut seen = Vec::new();
    let (taken, _refused) = chat_until_taken(&mut carol, "carol", "heard you", &mut seen);
    // `seen` ends with her own chat; nothing before it may be a chat.
    assert_eq!(
        chats(&seen).iter().map(summary).collect::<Vec<_>>(),
        [format!("chat carol: {taken}")],
        "carol got a chat twice or from nowhere"
    );
    let got = read_through_chat(&mut alice, &taken);
    assert_eq!(
        got.iter().map(summary).collect::<Vec<_>>(),
        [format!("chat carol: {taken}")]
    );
    alice.chat("good");
    assert_eq!(summary(&carol.recv_json()), "chat alice: good");
}

/// Sends chats (`<text> #<attempt>`) until the cluster takes one, while
/// Redis comes back: returns the text taken and the refused ones; every
/// message read on the way is kept in `seen`.
fn chat_until_taken(
    client: &mut Client,
    name: &str,
    text: &str,
    seen: &mut Vec<Value>,
) -> (String, Vec<String>) {
    let deadline = Instant::now() + RECOVERY;
    let mut refused = Vec::new();
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "{name}: no chat taken within {RECOVERY:?} of Redis's return; refused: {refused:?}"
        );
        let attempt_text = format!("{text} #{attempt}");
        client.chat(&attempt_text);
        loop {
            let message = client.recv_json();
            if message["type"] == "error" {
                assert_eq!(message["request"], "chat", "{name}: {message}");
                assert_eq!(message["error"], UNAVAILABLE, "{name}: {message}");
                refused.push(attempt_text.clone());
                std::thread::sleep(RETRY_PAUSE);
                break;
            }
            let mine = message["type"] == "chat" && message["text"] == attempt_text.as_str();
            seen.push(message);
            if mine {
                return (attempt_text, refused);
            }
        }
    }
    unreachable!()
}

#[test]
fn redis_stopped_and_restarted_mid_chat_nodes_recover_without_duplicates_or_reordering() {
    let mut redis = RedisServer::start();
    let mut nodes = redis.start_nodes(3, &[]);
    let names = ["alice", "bob", "carol"];
    let mut clients: Vec<Client> = names
        .iter()
        .zip(&nodes)
        .map(|(name, node)| join(node, "lab", name))
        .collect();
    let mut dave = join(&nodes[2], "lab", "dave");
    let mut seen: Vec<Vec<Value>> = vec![Vec::new(); 3];
    let mut taken = Vec::new();
    let mut refused = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let text = format!("before from {name}");
        clients[i].chat(&text);
        for (client, seen) in clients.iter_mut().zip(&mut seen) {
            seen.extend(read_through_chat(client, &text));
        }
        taken.push(text);
    }
    // dave leaves with everything so far, to come back with `since`.
    let dave_last = id(read_through_chat(&mut dave, "before from carol")
        .last()
        .unwrap());
    dave.send_json(json!({"type": "disconnect", "username": "dave"}));
    for (client, seen) in clients.iter_mut().zip(&mut seen) {
        seen.push(client.recv_until(|m| m["type"] == "disconnect"));
    }
    let highest_before = dave_last;

    redis.stop();
    // The sockets stay open; chats and logins are refused, on every node.
    for (i, name) in names.iter().enumerate() {
        let attempts = if i == 0 { 3 } else { 1 };
        for attempt in 0..attempts {
            let text = format!("during from {name} {attempt}");
            clients[i].chat(&text);
            let reply = clients[i].recv_until(|m| m["type"] == "error");
            assert_eq!(reply["request"], "chat", "{name}: {reply}");
            assert_eq!(reply["error"], UNAVAILABLE, "{name}: {reply}");
            refused.push(text);
        }
    }
    let mut erin = Client::connect_to(nodes[1].addr, "/r/lab");
    erin.send_json(json!({"type": "login", "username": "erin"}));
    let reply = erin.recv_until(|m| m["type"] != "history");
    assert_eq!(
        reply["type"], "error",
        "a login while Redis is away: {reply}"
    );
    assert_eq!(reply["error"], UNAVAILABLE, "{reply}");
    drop(erin);

    redis.restart();
    for (i, name) in names.iter().enumerate() {
        let (text, no) = chat_until_taken(
            &mut clients[i],
            name,
            &format!("after from {name}"),
            &mut seen[i],
        );
        taken.push(text);
        refused.extend(no);
    }
    let (end, no) = chat_until_taken(&mut clients[0], "alice", "the end", &mut seen[0]);
    refused.extend(no);
    taken.push(end.clone());
    for i in 1..3 {
        seen[i].extend(read_through_chat(&mut clients[i], &end));
    }

    for (name, seen) in names.iter().zip(&seen) {
        let chats = chats(seen);
        for pair in chats.windows(2) {
            assert!(
                id(&pair[0]) < id(&pair[1]),
                "{name} got ids out of order or twice: {} then {}",
                pair[0],
                pair[1]
            );
        }
        let texts: Vec<&str> = chats.iter().map(|c| c["text"].as_str().unwrap()).collect();
        let unique: HashSet<&&str> = texts.iter().collect();
        assert_eq!(
            unique.len(),
            texts.len(),
            "{name} got a chat twice: {texts:?}"
        );
        for text in &taken {
            assert!(
                texts.contains(&text.as_str()),
                "{name} never got {text:?}: {texts:?}"
            );
        }
        for text in &refused {
            assert!(
                !texts.contains(&text.as_str()),
                "{name} got the refused {text:?}"
            );
        }
        for chat in chats
            .iter()
            .filter(|c| c["text"].as_str().unwrap().starts_with("after"))
        {
            assert!(
                id(chat) > highest_before,
                "an id reused after the restart: {chat}"
            );
        }
    }
    // Everyone saw the same chats in the same order.
    assert_eq!(chats(&seen[0]), chats(&seen[1]));
    assert_eq!(chats(&seen[0]), chats(&seen[2]));
    // Redis came back empty and the nodes announced their users again:
    // everyone comes to see all three listed (a node that heard the room
    // again late may still be telling its users), and nobody is told that
    // they themselves left.
    let deadline = Instant::now() + RECOVERY;
    for ((name, seen), client) in names.iter().zip(&mut seen).zip(&mut clients) {
        let roster = |seen: &[Value]| {
            let last = seen
                .iter()
                .rev()
                .find(|m| m["type"] == "login" || m["type"] == "disconnect");
            let mut listed = last.map(users).unwrap_or_default();
            listed.sort();
            listed
        };
        while roster(seen) != names {
            match recv_before(client, deadline) {
                Some(message) => seen.push(message),
                None => panic!("{name} never saw all three listed: {seen:?}"),
            }
        }
        assert!(
            !seen.iter().any(|m| m["user_left"] == *name),
            "{name} was told they left: {seen:?}"
        );
    }

    // dave comes back, on another node, with the last id he had: he gets
    // what was stored after it, exactly as the others received it.
    let missed: Vec<Value> = chats(&seen[0])
        .into_iter()
        .filter(|chat| id(chat) > dave_last)
        .collect();
    let mut dave = Client::connect_to(nodes[1].addr, "/r/lab");
    dave.send_json(json!({"type": "login", "username": "dave", "since": dave_last}));
    let history = dave.recv_json();
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(
        history["messages"].as_array().unwrap(),
        &missed,
        "since {dave_last}"
    );

    // The outage is logged as one warning, not one per refused chat (other
    // warnings, such as the machine's connection ceiling, are not about it).
    let log = nodes[0].stop_and_read_log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && (l.contains("redis") || l.contains("cluster")))
        .collect();
    assert!(
        warnings.len() == 1,
        "node A refused 3 chats and warned {}:\n{log}",
        warnings.len()
    );
    nodes.clear();
}

#[test]
fn history_and_since_are_shared_by_all_nodes() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(3, &[]);
    let mut alice = join(&nodes[0], "hist", "alice");
    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        alice.chat(text);
        sent.push(alice.recv_until(|m| m["type"] == "chat"));
    }

    // A first login on node C gets them as history.
    let mut carol = Client::connect_to(nodes[2].addr, "/r/hist");
    carol.send_json(json!({"type": "login", "username": "carol"}));
    let history = carol.recv_json();
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(history["room"], "hist", "{history}");
    assert_eq!(history["complete"], true, "{history}");
    assert_eq!(history["messages"].as_array().unwrap(), &sent);

    // `since` on node B: only what came after.
    let mut dave = Client::connect_to(nodes[1].addr, "/r/hist");
    dave.send_json(json!({"type": "login", "username": "dave", "since": id(&sent[0])}));
    let history = dave.recv_json();
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(history["messages"].as_array().unwrap(), &sent[1..]);

    // The HTTP endpoint on node B, and paging by `before`.
    let (status, page) = get_json(nodes[1].addr, "/api/rooms/hist/messages");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"].as_array().unwrap(), &sent, "{page}");
    let path = format!("/api/rooms/hist/messages?before={}&limit=1", id(&sent[2]));
    let (_, page) = get_json(nodes[2].addr, &path);
    assert_eq!(page["messages"].as_array().unwrap(), &sent[1..2], "{page}");
    // Readiness asks the courier, on the same queue as the pages.
    for _ in 0..3 {
        let (status, body) = http_get(nodes[1].addr, "/readyz");
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn a_login_under_ones_own_name_is_answered_with_the_clusters_roster_alone() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(2, &[]);
    let mut alice = join(&nodes[0], "lab", "alice");
    let mut bob = join(&nodes[1], "lab", "bob");
    alice.recv_until(|m| m["type"] == "login" && m["user_joined"] == "bob");
    alice.send_json(json!({"type": "login", "username": "alice"}));
    let again = alice.recv_json();
    assert_eq!(again["type"], "login", "{again}");
    assert_eq!(again["user_joined"], "alice");
    assert_eq!(users(&again), ["alice", "bob"]);
    // Bob, on the other node, heard nothing of it.
    bob.chat("barrier");
    let next = bob.recv_json();
    assert_eq!(next["text"], "barrier", "{next}");
}

#[test]
fn api_rooms_and_info_on_any_node_show_the_whole_cluster() {
    let redis = RedisServer::start();
    let nodes = redis.start_nodes(3, &[]);
    let _alice = join(&nodes[0], "lab", "alice");
    let _bob = join(&nodes[1], "lab", "bob");
    let _carol = join(&nodes[2], "art", "carol");
    // Node C has nobody in "lab": what it says of "lab" comes from the
    // cluster. Polled: a count has no event to wait on.
    let expected = vec![("art".to_string(), 1), ("lab".to_string(), 2)];
    for (n, node) in nodes.iter().enumerate() {
        let mut last = Vec::new();
        let agreed = eventually(WAIT, || {
            last = room_counts(node.addr);
            last == expected
        });
        assert!(agreed, "node {n}'s /api/rooms: {last:?}");
    }
    let mut ids = HashSet::new();
    for node in &nodes {
        let (status, info) = get_json(node.addr, "/api/info");
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["cluster"], "threadchat", "{info}");
        let id = info["node"]
            .as_str()
            .unwrap_or_else(|| panic!("no node id: {info}"));
        assert!(ids.insert(id.to_string()), "node id {id} twice");
    }
}

#[test]
fn two_clusters_on_one_redis_do_not_meet() {
    let redis = RedisServer::start();
    let one = BinaryServer::start(&["--redis", &redis.url(), "--cluster", "one"]);
    let two = BinaryServer::start(&["--redis", &redis.url(), "--cluster", "two"]);
    let mut walter_one = join(&one, "lab", "walter");
    let mut walter_two = join(&two, "lab", "walter");
    walter_two.chat("in two");
    assert_eq!(summary(&walter_two.recv_json()), "chat walter: in two");
    walter_one.chat("in one");
    assert_eq!(summary(&walter_one.recv_json()), "chat walter: in one");
    let foreign = redis
        .keys("*")
        .into_iter()
        .filter(|key| !key.starts_with("one:") && !key.starts_with("two:"))
        .collect::<Vec<_>>();
    assert!(
        foreign.is_empty(),
        "keys outside both prefixes: {foreign:?}"
    );
}

#[test]
fn start_up_with_redis_unreachable_or_with_mutual_follows_exits_with_the_cause() {
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let (status, output) = BinaryServer::run_to_end(&["--redis", &url]);
    let status = status.expect("the node exits by itself");
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("redis {url}: cannot connect: ")),
        "the error names the URL and the cause: {output}"
    );
    assert!(
        output.to_lowercase().contains("refused"),
        "the cause is Redis's refusal: {output}"
    );

    let redis = RedisServer::start();
    let (status, output) = BinaryServer::run_to_end(&["--redis", &redis.url(), "--mutual-follows"]);
    assert_eq!(status.expect("exits by itself").code(), Some(2), "{output}");
    assert!(
        output.contains("--mutual-follows") && output.contains("--redis"),
        "names both flags: {output}"
    );
}

#[test]
fn the_redis_password_appears_in_no_log_line_error_or_answer() {
    const PASSWORD: &str = "hunter2-very-secret-redis-password";
    let mut redis = RedisServer::start();
    let _: String = redis
        .command(&["CONFIG", "SET", "requirepass", PASSWORD])
        .expect("set a password");
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/", redis.port());
    let mut node = BinaryServer::start_logged(&["--redis", &url, "--log-level", "debug"]);
    for path in ["/api/info", "/readyz", "/metrics"] {
        let (_, body) = http_get(node.addr, path);
        assert!(
            !body.contains(PASSWORD),
            "{path} shows the password: {body}"
        );
    }
    // With Redis gone, /readyz says why, and the log says it once: neither
    // with the password.
    redis.stop();
    let mut said = String::new();
    let unready = eventually(Duration::from_secs(10), || {
        let (status, body) = http_get(node.addr, "/readyz");
        said = body;
        status == 503
    });
    assert!(unready, "/readyz stayed ready with Redis gone: {said}");
    assert!(
        !said.contains(PASSWORD),
        "/readyz shows the password: {said}"
    );
    let log = node.stop_and_read_log();
    assert!(log.contains("127.0.0.1"), "the log names the Redis: {log}");
    assert!(
        !log.contains(PASSWORD),
        "the log shows the password:\n{log}"
    );

    // A start-up that cannot connect names the URL without its password.
    let (_, output) = BinaryServer::run_to_end(&["--redis", &url]);
    assert!(output.contains("cannot connect"), "{output}");
    assert!(!output.contains(PASSWORD), "{output}");
}

#[test]
fn the_whole_redis_store_is_bounded_and_the_stalest_rooms_lose_their_chats_first() {
    let redis = RedisServer::start();
    let node = BinaryServer::start(&["--redis", &redis.url(), "--retain-total", "6"]);
    for (room, count) in [("old", 4), ("mid", 2), ("new", 3)] {
        let mut client = join(&node, room, "walter");
        for n in 0..count {
            client.chat(&format!("{room} {n}"));
            client.recv_until(|m| m["type"] == "chat" && m["text"] == format!("{room} {n}"));
        }
        // Rooms are ordered by their last chat's millisecond: a later one.
        std::thread::sleep(Duration::from_millis(5));
    }
    // The courier trims on its timer (every 2 s): "new" and "mid" are kept
    // whole, "old", the stalest, keeps what is left of the six.
    let length = |room: &str| -> u64 {
        redis
            .command(&["XLEN", &format!("threadchat:{{{room}}}:log")])
            .unwrap_or(0)
    };
    let trimmed = eventually(Duration::from_secs(10), || length("old") == 1);
    assert!(trimmed, "old keeps {} chats", length("old"));
    assert_eq!((length("mid"), length("new")), (2, 3));
    // What is left is still read as history: the newest of "old".
    let (status, page) = get_json(node.addr, "/api/rooms/old/messages");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["text"], "old 3", "{page}");
}
