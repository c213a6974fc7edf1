//! Moderation over real sockets and a real SQLite file: every command
//! allowed and refused, in the room's order with the chats, and kept.

mod common;

use std::time::Duration;

use common::moderation::{SECRET, token};
use common::{Client, TestServer, WAIT, texts, users};
use serde_json::{Value, json};
use threadchat::Config;
use threadchat::auth::Secret;
use threadchat::protocol::Role;
use tungstenite::protocol::frame::coding::CloseCode;

fn signed(edit_window: u64) -> Config {
    Config {
        jwt_secret: Some(SECRET.parse::<Secret>().unwrap()),
        edit_window,
        ..Config::ephemeral()
    }
}

/// A client signed in to `room` as `user`, its own `login` read.
fn join(server: &TestServer, room: &str, user: &str, role: Role) -> Client {
    let mut client = Client::connect_to(server.addr, &format!("/r/{room}"));
    client.send_json(json!({"type": "login", "token": token(user, role)}));
    let login = client.recv_until(|m| m["type"] != "history");
    assert_eq!(login["type"], "login", "{login}");
    assert_eq!(login["user_joined"], user);
    client
}

/// Sends a chat and returns its id, as the sender hears it back.
fn say(client: &mut Client, text: &str) -> u64 {
    client.chat(text);
    let chat = client.recv_until(|m| m["type"] == "chat" && m["text"] == text);
    chat["id"].as_u64().unwrap()
}

/// The next error, which must be `error` for request `kind`.
fn refused(client: &mut Client, kind: &str, error: &str) -> Value {
    let reply = client.recv_until(|m| m["type"] == "error");
    assert_eq!(reply["error"], error, "{reply}");
    assert_eq!(reply["request"], kind, "{reply}");
    reply
}

/// One HTTP request (`line` is its method and path), with an
/// `Authorization` header and a body: the status and the body answered.
fn http(server: &TestServer, line: &str, authorization: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{line} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    common::status_and_body(&common::raw_http(server.addr, request.as_bytes()))
}

#[test]
fn an_author_edits_and_deletes_their_own_chat_and_the_room_hears_it() {
    let server = TestServer::with(signed(900));
    let mut alice = join(&server, "r", "alice", Role::Member);
    let mut bob = join(&server, "r", "bob", Role::Member);
    alice.recv_until(|m| m["user_joined"] == "bob");
    let typo = say(&mut alice, "helo");
    let kept = say(&mut alice, "second");
    alice.send_json(json!({"type": "edit", "id": typo, "text": "hello"}));
    for client in [&mut alice, &mut bob] {
        let edit = client.recv_until(|m| m["type"] == "edit");
        assert_eq!(edit["id"], typo);
        assert_eq!(edit["text"], "hello");
        assert_eq!(edit["room"], "r");
        assert_eq!(edit["by"], "alice");
        assert!(edit["edited_ts"].as_u64().unwrap() > 0);
    }
    alice.send_json(json!({"type": "delete", "id": kept}));
    for client in [&mut alice, &mut bob] {
        let delete = client.recv_until(|m| m["type"] == "delete");
        assert_eq!(
            delete,
            json!({"type": "delete", "room": "r", "id": kept, "by": "alice"})
        );
    }
    // A newcomer's history carries the latest text and leaves the deleted
    // chat out; so do `since` and the HTTP pages.
    let mut carol = Client::connect_to(server.addr, "/r/r");
    carol.send_json(json!({"type": "login", "token": token("carol", Role::Member)}));
    let history = carol.recv_json();
    assert_eq!(texts(&history), ["hello"]);
    assert!(history["messages"][0]["edited_ts"].is_u64());
    let mut dave = Client::connect_to(server.addr, "/r/r");
    dave.send_json(json!({"type": "login", "token": token("dave", Role::Member), "since": 0}));
    assert_eq!(texts(&dave.recv_json()), ["hello"]);
    let bearer = format!("Bearer {}", token("dave", Role::Member));
    let (status, body) = http(&server, "GET /api/rooms/r/messages", &bearer, "");
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(texts(&page), ["hello"]);
}

#[test]
fn nobody_changes_anothers_chat_or_one_that_is_not_there() {
    let server = TestServer::with(signed(900));
    let mut alice = join(&server, "r", "alice", Role::Member);
    let mut bob = join(&server, "r", "bob", Role::Member);
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let mut elsewhere = join(&server, "other", "alice", Role::Member);
    let id = say(&mut alice, "mine");
    bob.recv_until(|m| m["id"] == id);
    bob.send_json(json!({"type": "edit", "id": id, "text": "yours"}));
    let reply = refused(&mut bob, "edit", "not allowed");
    assert!(
        reply["details"]
            .as_str()
            .unwrap()
            .contains("only its author"),
        "{reply}"
    );
    bob.send_json(json!({"type": "delete", "id": id}));
    refused(&mut bob, "delete", "not allowed");
    // A moderator deletes anything, but edits nobody's words.
    teacher.send_json(json!({"type": "edit", "id": id, "text": "theirs"}));
    refused(&mut teacher, "edit", "not allowed");
    alice.send_json(json!({"type": "delete", "id": id + 100}));
    refused(&mut alice, "delete", "unknown message");
    // Ids are per room: the same id in another room is another chat (here
    // none).
    elsewhere.send_json(json!({"type": "delete", "id": id}));
    refused(&mut elsewhere, "delete", "unknown message");
    alice.send_json(json!({"type": "delete", "id": "one"}));
    refused(&mut alice, "delete", "invalid command");
    // Members give no moderator's commands.
    for command in [
        json!({"type": "mute", "username": "alice", "seconds": 60}),
        json!({"type": "unmute", "username": "alice"}),
        json!({"type": "kick", "username": "alice"}),
        json!({"type": "ban", "username": "alice", "seconds": 60}),
        json!({"type": "unban", "username": "alice"}),
        json!({"type": "room_mode", "mode": "lecture"}),
    ] {
        let kind = command["type"].as_str().unwrap().to_string();
        bob.send_json(command);
        let reply = refused(&mut bob, &kind, "not allowed");
        assert!(
            reply["details"]
                .as_str()
                .unwrap()
                .contains("only moderators")
        );
    }
    // The chat is untouched, and nobody else heard a thing.
    teacher.send_json(json!({"type": "delete", "id": id}));
    let delete = alice.recv_until(|m| m["type"] != "login");
    assert_eq!(delete["type"], "delete", "alice heard {delete}");
    assert_eq!(delete["by"], "teacher");
}

#[test]
fn past_the_window_only_a_moderator_deletes_and_0_turns_authors_off() {
    let server = TestServer::with(signed(1));
    let mut alice = join(&server, "r", "alice", Role::Member);
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let id = say(&mut alice, "old news");
    // The window is time itself: a second and a little more.
    std::thread::sleep(Duration::from_millis(1_200));
    alice.send_json(json!({"type": "edit", "id": id, "text": "new news"}));
    refused(&mut alice, "edit", "edit window passed");
    alice.send_json(json!({"type": "delete", "id": id}));
    refused(&mut alice, "delete", "edit window passed");
    teacher.send_json(json!({"type": "delete", "id": id}));
    assert_eq!(alice.recv_until(|m| m["type"] == "delete")["id"], id);
    drop(server);

    let server = TestServer::with(signed(0));
    let mut alice = join(&server, "r", "alice", Role::Member);
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let id = say(&mut alice, "fresh");
    alice.send_json(json!({"type": "edit", "id": id, "text": "fresher"}));
    let reply = refused(&mut alice, "edit", "not allowed");
    assert!(
        reply["details"]
            .as_str()
            .unwrap()
            .contains("--edit-window 0")
    );
    teacher.send_json(json!({"type": "delete", "id": id}));
    assert_eq!(alice.recv_until(|m| m["type"] == "delete")["id"], id);
}

#[test]
fn without_sign_in_every_command_is_refused() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    walter.chat("hi");
    let id = walter.recv_until(|m| m["type"] == "chat")["id"].clone();
    for command in [
        json!({"type": "delete", "id": id}),
        json!({"type": "edit", "id": id, "text": "x"}),
        json!({"type": "kick", "username": "walter"}),
        json!({"type": "room_mode", "mode": "lecture"}),
    ] {
        let kind = command["type"].as_str().unwrap().to_string();
        walter.send_json(command);
        let reply = refused(&mut walter, &kind, "sign-in required");
        assert!(reply["details"].as_str().unwrap().contains("sign-in"));
    }
}

#[test]
fn a_muted_user_cannot_chat_until_unmuted_and_the_room_is_told() {
    let server = TestServer::with(signed(900));
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let mut bob = join(&server, "r", "bob", Role::Member);
    teacher.send_json(json!({"type": "mute", "username": "bob", "seconds": 600}));
    for client in [&mut teacher, &mut bob] {
        let mute = client.recv_until(|m| m["type"] == "mute");
        assert_eq!(mute["username"], "bob");
        assert_eq!(mute["by"], "teacher");
        assert!(mute["until"].as_u64().unwrap() > 0);
    }
    bob.chat("can I speak?");
    let reply = refused(&mut bob, "chat", "you are muted");
    assert!(
        reply["details"].as_str().unwrap().starts_with("until 20"),
        "{reply}"
    );
    // Nor edit their earlier words.
    bob.send_json(json!({"type": "edit", "id": 1, "text": "x"}));
    refused(&mut bob, "edit", "you are muted");
    say(&mut teacher, "the teacher may");
    teacher.send_json(json!({"type": "unmute", "username": "bob"}));
    bob.recv_until(|m| m["type"] == "unmute");
    say(&mut bob, "thank you");
    teacher.send_json(json!({"type": "unmute", "username": "bob"}));
    refused(&mut teacher, "unmute", "unknown user");
    teacher.send_json(json!({"type": "mute", "username": "bob", "seconds": 86_401}));
    refused(&mut teacher, "mute", "invalid command");
}

#[test]
fn a_kicked_user_is_closed_with_4001_and_the_room_hears_them_leave_once() {
    let server = TestServer::with(signed(900));
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let mut bob = join(&server, "r", "bob", Role::Member);
    teacher.recv_until(|m| m["user_joined"] == "bob");
    teacher.send_json(json!({"type": "kick", "username": "bob", "reason": "spamming"}));
    let kick = bob.recv_until(|m| m["type"] == "kick");
    assert_eq!(kick["reason"], "spamming");
    let close = bob.expect_close().expect("a close frame");
    assert_eq!(close.code, CloseCode::from(4001));
    assert_eq!(close.reason.as_str(), "spamming");
    let kick = teacher.recv_json();
    assert_eq!(
        (kick["type"].as_str(), kick["username"].as_str()),
        (Some("kick"), Some("bob"))
    );
    let left = teacher.recv_json();
    assert_eq!(left["type"], "disconnect", "{left}");
    assert_eq!(left["user_left"], "bob");
    assert_eq!(users(&left), ["teacher"]);
    // Once: the next thing the teacher hears is its own chat.
    let id = say(&mut teacher, "where were we");
    assert!(id > 0);
    teacher.send_json(json!({"type": "kick", "username": "nobody"}));
    refused(&mut teacher, "kick", "unknown user");
}

#[test]
fn a_banned_user_is_closed_and_refused_at_login_until_unbanned() {
    let server = TestServer::with(signed(900));
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let mut bob = join(&server, "r", "bob", Role::Member);
    teacher
        .send_json(json!({"type": "ban", "username": "bob", "seconds": 3600, "reason": "abuse"}));
    let close = bob.expect_close().expect("a close frame");
    assert_eq!(close.code, CloseCode::from(4003));
    assert!(
        close.reason.as_str().starts_with("banned until 20"),
        "{close:?}"
    );
    assert!(close.reason.as_str().ends_with(": abuse"));
    teacher.recv_until(|m| m["type"] == "disconnect" && m["user_left"] == "bob");
    let mut again = Client::connect_to(server.addr, "/r/r");
    again.send_json(json!({"type": "login", "token": token("bob", Role::Member)}));
    let reply = refused(&mut again, "login", "you are banned");
    let details = reply["details"].as_str().unwrap();
    assert!(
        details.contains("until 20") && details.ends_with("abuse"),
        "{details}"
    );
    // Per room: the lobby lets bob in.
    join(&server, "lobby", "bob", Role::Member);
    teacher.send_json(json!({"type": "unban", "username": "bob"}));
    teacher.recv_until(|m| m["type"] == "unban");
    again.send_json(json!({"type": "login", "token": token("bob", Role::Member)}));
    let login = again.recv_until(|m| m["type"] == "login");
    assert_eq!(login["user_joined"], "bob");
}

#[test]
fn in_lecture_mode_only_moderators_chat_and_joiners_are_told() {
    let server = TestServer::with(signed(900));
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let mut bob = join(&server, "r", "bob", Role::Member);
    teacher.send_json(json!({"type": "room_mode", "mode": "lecture"}));
    let mode = bob.recv_until(|m| m["type"] == "room_mode");
    assert_eq!(
        mode,
        json!({"type": "room_mode", "room": "r", "mode": "lecture", "by": "teacher"})
    );
    bob.chat("question!");
    refused(&mut bob, "chat", "lecture mode");
    say(&mut teacher, "today: threads");
    let mut carol = join(&server, "r", "carol", Role::Member);
    let told = carol.recv_json();
    assert_eq!(
        told,
        json!({"type": "room_mode", "room": "r", "mode": "lecture"})
    );
    teacher.send_json(json!({"type": "room_mode", "mode": "open"}));
    bob.recv_until(|m| m["type"] == "room_mode" && m["mode"] == "open");
    say(&mut bob, "question!");
}

#[test]
fn a_delete_never_reaches_anyone_before_the_chat_it_deletes() {
    let server = TestServer::with(Config {
        rate_limit: 0,
        ..signed(900)
    });
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    let mut observer = join(&server, "r", "observer", Role::Member);
    let senders: Vec<_> = (0..3)
        .map(|i| {
            let mut client = join(&server, "r", &format!("s{i}"), Role::Member);
            std::thread::spawn(move || {
                for n in 0..60 {
                    client.chat(&format!("s{i} {n}"));
                }
                client
            })
        })
        .collect();
    // The teacher deletes ids it has not seen yet, guessing ahead: each is
    // either refused (no such chat yet) or ordered after its chat.
    for id in 1..=180 {
        teacher.send_json(json!({"type": "delete", "id": id}));
    }
    let mut seen = std::collections::HashSet::new();
    let mut deletes = 0;
    let deadline = std::time::Instant::now() + WAIT * 2;
    while seen.len() < 180 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} chats",
            seen.len()
        );
        let message = observer.recv_json();
        match message["type"].as_str() {
            Some("chat") => {
                seen.insert(message["id"].as_u64().unwrap());
            }
            Some("delete") => {
                let id = message["id"].as_u64().unwrap();
                assert!(seen.contains(&id), "delete of {id} before its chat");
                deletes += 1;
            }
            _ => {}
        }
    }
    for sender in senders {
        drop(sender.join().unwrap());
    }
    // Some guesses came after their chat (which ones depends on timing).
    println!("{deletes} of the deletes guessed ahead found their chat");
}

#[test]
fn a_deleted_chats_text_leaves_the_file_and_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let server = TestServer::with(Config {
        db: db.to_string_lossy().into_owned(),
        ..signed(900)
    });
    let mut alice = join(&server, "r", "alice", Role::Member);
    let secret = "my-password-is-hunter2-oops";
    let id = say(&mut alice, secret);
    let on_disk = || {
        ["chat.db", "chat.db-wal"].iter().any(|file| {
            std::fs::read(dir.path().join(file))
                .is_ok_and(|bytes| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
        })
    };
    assert!(
        common::eventually(WAIT, on_disk),
        "the chat was never written"
    );
    alice.send_json(json!({"type": "delete", "id": id}));
    alice.recv_until(|m| m["type"] == "delete");
    // Erased once the archivist, idle, has checkpointed.
    assert!(
        common::eventually(WAIT, || !on_disk()),
        "the deleted text is still in the file or its log"
    );
}

#[test]
fn a_banned_user_who_opens_the_room_is_closed_when_its_rules_load() {
    // Under --mutual-follows a login does not wait for the room's history,
    // so the first login into a room comes before the room's rules.
    let server = TestServer::with(Config {
        mutual_follows: true,
        ..signed(900)
    });
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    teacher.send_json(json!({"type": "ban", "username": "bob", "seconds": 600}));
    teacher.recv_until(|m| m["type"] == "ban");
    teacher.ws.close(None).unwrap();
    // The room closes with its last connection, and opens with bob's.
    let gone = common::eventually(WAIT, || {
        let metrics = server.get("/metrics").1;
        metrics.lines().any(|line| line == "threadchat_rooms 0")
    });
    assert!(gone, "room r never closed");
    let mut bob = Client::connect_to(server.addr, "/r/r");
    bob.send_json(json!({"type": "login", "token": token("bob", Role::Member)}));
    loop {
        match bob.ws.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                assert_eq!(frame.unwrap().code, CloseCode::from(4003));
                break;
            }
            Ok(tungstenite::Message::Text(text)) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "error" {
                    assert_eq!(message["error"], "you are banned");
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("bob was neither refused nor closed: {e}"),
        }
    }
}

#[test]
fn commands_count_against_the_rate_limit_and_the_page_learns_the_window() {
    let server = TestServer::with(Config {
        rate_limit: 1,
        ..signed(600)
    });
    let mut teacher = join(&server, "r", "teacher", Role::Moderator);
    // A burst of twice the rate passes; the rest is refused, by type.
    for _ in 0..5 {
        teacher.send_json(json!({"type": "room_mode", "mode": "open"}));
    }
    let reply = refused(&mut teacher, "room_mode", "rate limit exceeded");
    assert!(reply["details"].as_str().unwrap().contains("per second"));
    let (status, info) = server.get("/api/info");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["edit_window"], 600);
}

#[test]
fn a_chat_sent_to_mutual_followers_only_cannot_be_edited_for_the_room_to_read() {
    let server = TestServer::with(Config {
        mutual_follows: true,
        ..signed(900)
    });
    let mut alice = join(&server, "r", "alice", Role::Member);
    let id = say(&mut alice, "between us");
    alice.send_json(json!({"type": "edit", "id": id, "text": "for everyone?"}));
    let reply = refused(&mut alice, "edit", "not allowed");
    assert!(
        reply["details"]
            .as_str()
            .unwrap()
            .contains("mutual followers")
    );
    alice.send_json(json!({"type": "delete", "id": id}));
    alice.recv_until(|m| m["type"] == "delete");
}
