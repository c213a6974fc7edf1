//! Moderation across nodes on one real Redis: an action taken on node A is
//! heard on node B in the room's order, a ban on A refuses the login on B,
//! a kick closes the user's connection wherever it is, and the rules, the
//! edits and the audit log are the cluster's, not a node's.

mod common;

use common::moderation::{OPERATOR, SECRET, join, token};
use common::redis::RedisServer;
use common::{BinaryServer, Client, raw_http, status_and_body, texts};
use serde_json::{Value, json};
use threadchat::protocol::Role;
use tungstenite::protocol::frame::coding::CloseCode;

fn node(redis: &RedisServer, dir: &tempfile::TempDir) -> BinaryServer {
    let operator = dir.path().join("operator");
    std::fs::write(&operator, OPERATOR).unwrap();
    BinaryServer::start(&[
        "--redis",
        &redis.url(),
        "--jwt-secret",
        SECRET,
        "--admin-token-file",
        operator.to_str().unwrap(),
    ])
}

#[test]
fn actions_on_one_node_reach_every_node_in_the_rooms_order() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&redis, &dir), node(&redis, &dir));
    let (mut teacher, _) = join(a.addr, "teacher", Role::Moderator);
    let (mut bob, _) = join(b.addr, "bob", Role::Member);
    let (mut watcher, _) = join(b.addr, "watcher", Role::Member);
    // Bob's chat and his own edit, made on node B, reach node A.
    bob.chat("helo");
    let id = bob.recv_until(|m| m["type"] == "chat")["id"]
        .as_u64()
        .unwrap();
    bob.send_json(json!({"type": "edit", "id": id, "text": "hello"}));
    let edit = teacher.recv_until(|m| m["type"] == "edit");
    assert_eq!(
        (edit["id"].as_u64(), edit["text"].as_str()),
        (Some(id), Some("hello"))
    );
    // The teacher on A deletes chats as they arrive from B: no node hears
    // a delete before its chat.
    bob.chat("one");
    bob.chat("two");
    for _ in 0..2 {
        let chat = teacher.recv_until(|m| m["type"] == "chat");
        teacher.send_json(json!({"type": "delete", "id": chat["id"]}));
    }
    let mut seen = Vec::new();
    let mut deleted = 0;
    while deleted < 2 {
        let message = watcher.recv_json();
        match message["type"].as_str() {
            Some("chat") => seen.push(message["id"].as_u64().unwrap()),
            Some("delete") => {
                assert!(seen.contains(&message["id"].as_u64().unwrap()), "{message}");
                assert_eq!(message["by"], "teacher");
                deleted += 1;
            }
            _ => {}
        }
    }
    // A newcomer on either node gets the latest text and not the deleted.
    for node in [&a, &b] {
        let (_, before) = join(
            node.addr,
            &format!("late{}", node.addr.port()),
            Role::Member,
        );
        assert_eq!(texts(&before[0]), ["hello"], "{}", before[0]);
    }
    // Lecture mode set on A holds on B, and B's joiners are told.
    teacher.send_json(json!({"type": "room_mode", "mode": "lecture"}));
    bob.recv_until(|m| m["type"] == "room_mode");
    bob.chat("may I?");
    assert_eq!(
        bob.recv_until(|m| m["type"] == "error")["error"],
        "lecture mode"
    );
    let (mut carol, _) = join(b.addr, "carol", Role::Member);
    let told = carol.recv_json();
    assert_eq!(
        told,
        json!({"type": "room_mode", "room": "r", "mode": "lecture"})
    );
    // A mute on A holds on B.
    teacher.send_json(json!({"type": "room_mode", "mode": "open"}));
    teacher.send_json(json!({"type": "mute", "username": "bob", "seconds": 60}));
    bob.recv_until(|m| m["type"] == "mute");
    bob.chat("still?");
    assert_eq!(
        bob.recv_until(|m| m["type"] == "error")["error"],
        "you are muted"
    );
}

#[test]
fn a_ban_or_kick_on_one_node_closes_and_refuses_the_user_on_another() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(&redis, &dir), node(&redis, &dir));
    let (mut teacher, _) = join(a.addr, "teacher", Role::Moderator);
    let (mut bob, _) = join(b.addr, "bob", Role::Member);
    teacher.recv_until(|m| m["user_joined"] == "bob");
    teacher.send_json(json!({"type": "kick", "username": "bob", "reason": "calm down"}));
    let close = bob.expect_close().expect("a close frame");
    assert_eq!(close.code, CloseCode::from(4001));
    assert_eq!(close.reason.as_str(), "calm down");
    // The room hears bob leave once, on every node.
    teacher.recv_until(|m| m["type"] == "disconnect" && m["user_left"] == "bob");
    let (mut bob, _) = join(b.addr, "bob", Role::Member);
    teacher.recv_until(|m| m["user_joined"] == "bob");
    teacher.send_json(json!({"type": "ban", "username": "bob", "seconds": 600, "reason": "again"}));
    assert_eq!(bob.expect_close().unwrap().code, CloseCode::from(4003));
    for node in [&b, &a] {
        let mut again = Client::connect_to(node.addr, "/r/r");
        again.send_json(json!({"type": "login", "token": token("bob", Role::Member)}));
        let refused = again.recv_until(|m| m["type"] == "error");
        assert_eq!(refused["error"], "you are banned", "{refused}");
    }
    // A node that opens the room later loads the ban with it.
    let c = node(&redis, &dir);
    let mut again = Client::connect_to(c.addr, "/r/r");
    again.send_json(json!({"type": "login", "token": token("bob", Role::Member)}));
    assert_eq!(
        again.recv_until(|m| m["type"] == "error")["error"],
        "you are banned"
    );
    // The audit log is the cluster's: read on B, the actions taken on A.
    let request = format!(
        "GET /api/rooms/r/moderation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\r\n"
    );
    let (status, body) = status_and_body(&raw_http(b.addr, request.as_bytes()));
    assert_eq!(status, 200, "{body}");
    let log: Value = serde_json::from_str(&body).unwrap();
    let actions: Vec<(u64, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(actions, [(1, "kick"), (2, "ban")]);
    // Unbanned over HTTP on C, bob is let in on A.
    let unban = json!({"type": "unban", "username": "bob"}).to_string();
    let request = format!(
        "POST /api/rooms/r/moderation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Length: {}\r\n\r\n{unban}",
        unban.len()
    );
    let (status, body) = status_and_body(&raw_http(c.addr, request.as_bytes()));
    assert_eq!(status, 200, "{body}");
    teacher.recv_until(|m| m["type"] == "unban");
    join(a.addr, "bob", Role::Member);
}
