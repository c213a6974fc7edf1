//! Moderation kept: actions survive `kill -9` and a restart (mutes, bans,
//! the room's mode, edits and deletes), the audit log says who did what,
//! and the operator's HTTP API does the same actions for scripts. A real
//! binary, a real SQLite file, real sockets.

mod common;

use common::moderation::{OPERATOR, SECRET, join, token};
use common::{BinaryServer, Client, raw_http, status_and_body, texts};
use serde_json::{Value, json};
use threadchat::protocol::Role;
use tungstenite::protocol::frame::coding::CloseCode;

fn http(addr: std::net::SocketAddr, line: &str, bearer: &str, body: &str) -> (u16, Value) {
    let request = format!(
        "{line} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = status_and_body(&raw_http(addr, request.as_bytes()));
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn server(dir: &tempfile::TempDir) -> BinaryServer {
    let db = dir.path().join("chat.db");
    let operator = dir.path().join("operator");
    std::fs::write(&operator, format!("{OPERATOR}\n")).unwrap();
    BinaryServer::start(&[
        "--db",
        db.to_str().unwrap(),
        "--jwt-secret",
        SECRET,
        "--admin-token-file",
        operator.to_str().unwrap(),
    ])
}

#[test]
fn every_action_anyone_saw_survives_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = server(&dir);
    let (mut teacher, _) = join(first.addr, "teacher", Role::Moderator);
    let (mut bob, _) = join(first.addr, "bob", Role::Member);
    let (mut eve, _) = join(first.addr, "eve", Role::Member);
    for text in ["typo", "regret", "stays"] {
        bob.chat(text);
        bob.recv_until(|m| m["text"] == text);
    }
    bob.send_json(json!({"type": "edit", "id": 1, "text": "fixed"}));
    bob.send_json(json!({"type": "delete", "id": 2}));
    teacher.recv_until(|m| m["type"] == "delete");
    teacher.send_json(json!({"type": "mute", "username": "bob", "seconds": 600}));
    teacher.send_json(json!({"type": "ban", "username": "eve", "seconds": 600, "reason": "spam"}));
    teacher.send_json(json!({"type": "room_mode", "mode": "lecture"}));
    // Everything has been seen by someone once the last is (one sender,
    // one order).
    teacher.recv_until(|m| m["type"] == "room_mode");
    assert_eq!(eve.expect_close().unwrap().code, CloseCode::from(4003));
    first.kill_9();

    let second = server(&dir);
    let (_, told) = join(second.addr, "carol", Role::Member);
    let history = &told[0];
    let texts = texts(history);
    assert_eq!(texts, ["fixed", "stays"], "{history}");
    let (mut bob, _) = join(second.addr, "bob", Role::Member);
    bob.recv_until(|m| m["type"] == "room_mode" && m["mode"] == "lecture");
    let (mut teacher, _) = join(second.addr, "teacher", Role::Moderator);
    teacher.send_json(json!({"type": "room_mode", "mode": "open"}));
    bob.recv_until(|m| m["type"] == "room_mode" && m["mode"] == "open");
    bob.chat("still muted?");
    let refused = bob.recv_until(|m| m["type"] == "error");
    assert_eq!(refused["error"], "you are muted");
    let mut eve = Client::connect_to(second.addr, "/r/r");
    eve.send_json(json!({"type": "login", "token": token("eve", Role::Member)}));
    let refused = eve.recv_until(|m| m["type"] == "error");
    assert_eq!(refused["error"], "you are banned");
    // The audit log has every action, in order, with who and whom.
    let (status, log) = http(second.addr, "GET /api/rooms/r/moderation", OPERATOR, "");
    assert_eq!(status, 200, "{log}");
    let rows: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (field("by"), field("action"), field("target"))
        })
        .collect();
    let row = |by: &str, action: &str, target: &str| (by.into(), action.into(), target.into());
    assert_eq!(
        rows,
        [
            row("bob", "edit", "bob"),
            row("bob", "delete", "bob"),
            row("teacher", "mute", "bob"),
            row("teacher", "ban", "eve"),
            row("teacher", "room_mode", ""),
            row("teacher", "room_mode", ""),
        ]
    );
}

#[test]
fn the_operator_acts_over_http_and_reads_the_log_and_nobody_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let addr = server.addr;
    let (mut bob, _) = join(addr, "bob", Role::Member);
    bob.chat("hello");
    let id = bob.recv_until(|m| m["type"] == "chat")["id"]
        .as_u64()
        .unwrap();

    let body = json!({"type": "delete", "id": id}).to_string();
    let (status, answer) = http(addr, "POST /api/rooms/r/moderation", OPERATOR, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"type": "delete", "room": "r", "id": id, "by": "operator"})
    );
    assert_eq!(bob.recv_until(|m| m["type"] == "delete")["by"], "operator");
    let (status, answer) = http(addr, "POST /api/rooms/r/moderation", OPERATOR, &body);
    assert_eq!((status, &answer["error"]), (404, &json!("unknown message")));
    let kick = json!({"type": "kick", "username": "bob", "reason": "by script"}).to_string();
    let (status, _) = http(addr, "POST /api/rooms/r/moderation", OPERATOR, &kick);
    assert_eq!(status, 200);
    assert_eq!(bob.expect_close().unwrap().code, CloseCode::from(4001));
    let bad = json!({"type": "mute", "username": "bob"}).to_string();
    let (status, answer) = http(addr, "POST /api/rooms/r/moderation", OPERATOR, &bad);
    assert_eq!((status, &answer["error"]), (400, &json!("invalid command")));
    let (status, _) = http(addr, "POST /api/rooms/r/moderation", OPERATOR, "not json");
    assert_eq!(status, 400);

    // Who may not: no token, a wrong one, a member's, a moderator's POST.
    let (status, _) = http(addr, "GET /api/rooms/r/moderation", "", "");
    assert_eq!(status, 401);
    let wrong = format!("{OPERATOR}x");
    let (status, _) = http(addr, "POST /api/rooms/r/moderation", &wrong, &body);
    assert_eq!(status, 401);
    let member = token("bob", Role::Member);
    let (status, _) = http(addr, "GET /api/rooms/r/moderation", &member, "");
    assert_eq!(status, 403);
    let moderator = token("teacher", Role::Moderator);
    let (status, _) = http(addr, "POST /api/rooms/r/moderation", &moderator, &body);
    assert_eq!(status, 403);
    // A moderator reads the log.
    let (status, log) = http(addr, "GET /api/rooms/r/moderation?limit=1", &moderator, "");
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["action"], "kick");
    assert_eq!(entries[0]["by"], "operator");
    assert_eq!(entries[0]["detail"], "by script");
    // Bounded bodies: too large is refused before it is read.
    let request = format!(
        "POST /api/rooms/r/moderation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Length: 10000000\r\n\r\n"
    );
    let (status, _) = status_and_body(&raw_http(addr, request.as_bytes()));
    assert_eq!(status, 413);
    let mut server = server;
    let log = server.stop_and_read_log();
    assert!(
        !log.contains(OPERATOR),
        "the operator's token is in the log"
    );
}
