//! The history file as a real process sees it: a `kill -9` loses nothing
//! anyone received (over ws, and over wss with native TLS), and a bad file
//! stops the server with a clear error.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::tls::ServerTls;
use common::{BinaryServer, WAIT};
use serde_json::{Value, json};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("threadchat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every chat in the room's history, oldest first, read through `since`:
/// a long catch-up comes in pages (`"more": true`), the last one saying
/// whether it is complete.
fn whole_history(server: &BinaryServer) -> Vec<Value> {
    let mut reader = server.connect_to("/r/crash");
    reader.send_json(json!({"type": "login", "username": "auditor", "since": 0}));
    let mut messages = Vec::new();
    loop {
        let page = reader.recv_json();
        assert_eq!(page["type"], "history", "{page}");
        messages.extend(page["messages"].as_array().unwrap().iter().cloned());
        if page["more"] != true {
            assert_eq!(page["complete"], true, "history cut short");
            return messages;
        }
    }
}

#[test]
fn every_chat_any_client_received_survives_kill_9() {
    received_chats_survive_kill_9(None);
}

#[test]
fn every_chat_any_client_received_over_tls_survives_kill_9() {
    received_chats_survive_kill_9(Some(&ServerTls::new()));
}

/// Chats over ws, or over wss with `tls`'s certificate (the restarted
/// server keeps it).
fn received_chats_survive_kill_9(tls: Option<&ServerTls>) {
    let dir = TempDir::new(if tls.is_some() { "crash-tls" } else { "crash" });
    let db = dir.path("chat.db");
    let args = ["--db", &db, "--rate-limit", "0", "--history-max", "100000"];
    let server = BinaryServer::start_over(&args, tls);
    // Two senders and a listener in one room; the senders keep chatting
    // until the connection breaks.
    let mut listener = server.connect_to("/r/crash");
    listener.login("listener");
    let senders: Vec<_> = ["walter", "maria"]
        .into_iter()
        .map(|name| {
            let mut client = server.connect_to("/r/crash");
            client.login(name);
            std::thread::spawn(move || {
                for i in 0..100_000 {
                    let message = json!({"type": "chat", "text": format!("{name} {i}")});
                    if client
                        .ws
                        .send(tungstenite::Message::text(message.to_string()))
                        .is_err()
                    {
                        break;
                    }
                }
            })
        })
        .collect();
    // Let the burst run, then kill the server in the middle of it.
    let mut received = Vec::new();
    while received.len() < 2_000 {
        let message = listener.recv_json();
        if message["type"] == "chat" {
            received.push(message);
        }
    }
    server.kill_9();
    // Whatever was already on its way to the listener was sent before the
    // kill: read it to the end of the stream.
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match listener.ws.read() {
            Ok(tungstenite::Message::Text(text)) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "chat" {
                    received.push(message);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for sender in senders {
        sender.join().unwrap();
    }

    let restarted = BinaryServer::start_over(&args, tls);
    let stored = whole_history(&restarted);
    // The received chats are a prefix-ordered subsequence of the history:
    // each one is there, exactly as it was received, in the same order.
    let mut position = 0;
    for chat in &received {
        let found = stored[position..].iter().position(|s| s == chat);
        let Some(offset) = found else {
            panic!(
                "received but lost in the crash: {chat} ({} received, {} stored)",
                received.len(),
                stored.len()
            );
        };
        position += offset + 1;
    }
    // Ids stay increasing after the restart.
    let last = stored.last().unwrap()["id"].as_u64().unwrap();
    let mut writer = restarted.connect_to("/r/crash");
    writer.login("after");
    writer.chat("after the crash");
    let echo = writer.recv_until(|m| m["type"] == "chat");
    assert!(
        echo["id"].as_u64().unwrap() > last,
        "{echo} after id {last}"
    );
}

#[test]
fn a_corrupt_database_stops_the_server_with_a_clear_error_and_is_left_untouched() {
    let dir = TempDir::new("corrupt");
    let db = dir.path("chat.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let (status, output) = BinaryServer::run_to_end(&["--db", &db]);
    let status = status.expect("the server exits by itself");
    assert!(!status.success(), "{output}");
    assert!(output.contains(&db), "the error names the file: {output}");
    assert!(
        output.to_lowercase().contains("not a database") || output.contains("corrupt"),
        "the error names the cause: {output}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the file was changed");
}

#[test]
fn a_database_in_use_by_another_server_stops_the_second_with_a_clear_error() {
    let dir = TempDir::new("locked");
    let db = dir.path("chat.db");
    let _first = BinaryServer::start(&["--db", &db]);
    let (status, output) = BinaryServer::run_to_end(&["--db", &db]);
    let status = status.expect("the second server exits by itself");
    assert!(!status.success(), "{output}");
    assert!(output.contains(&db), "the error names the file: {output}");
    assert!(
        output.contains("locked"),
        "the error names the cause: {output}"
    );
}
