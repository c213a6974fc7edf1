//! History: every chat is stored before anyone sees it, replayed on join and
//! after a reconnect, and still there after a crash.

mod common;

use std::path::PathBuf;

use common::{Client, TestServer, texts, tutorial_view};
use serde_json::{Value, json};
use threadchat::Config;

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "threadchat-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> String {
        self.0.join("chat.db").to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unlimited() -> Config {
    Config {
        rate_limit: 0,
        ..Config::ephemeral()
    }
}

/// Logs in with extra fields (`since`) and returns the history message,
/// checking that the client's own login follows it.
fn login_with_history(client: &mut Client, login: Value) -> Value {
    let name = login["username"].as_str().unwrap().to_string();
    client.send_json(login);
    let history = client.recv_json();
    assert_eq!(history["type"], "history", "{history}");
    let joined = client.recv_json();
    assert_eq!(joined["type"], "login", "{joined}");
    assert_eq!(joined["user_joined"], name);
    history
}

/// Sends `n` chats and reads their echoes; returns the echoes.
fn chat_burst(client: &mut Client, prefix: &str, n: usize) -> Vec<Value> {
    for i in 0..n {
        client.chat(&format!("{prefix}{i}"));
    }
    (0..n)
        .map(|_| client.recv_until(|m| m["type"] == "chat"))
        .collect()
}

#[test]
fn every_chat_has_an_increasing_id_and_a_server_time() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let echoes = chat_burst(&mut walter, "m", 5);
    let ids: Vec<u64> = echoes.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert!(ids[0] >= 1);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    for echo in &echoes {
        let ts = echo["ts"].as_u64().expect("ts is a number");
        assert!(ts >= before && ts < before + 60_000, "{echo}");
        assert_eq!(echo["room"], "algebra");
        assert_eq!(echo["username"], "walter");
    }
}

#[test]
fn a_late_joiner_gets_the_rooms_last_chats_before_its_login() {
    let server = TestServer::with(Config {
        history: 3,
        ..unlimited()
    });
    let mut walter = server.login_in("algebra", "walter");
    let sent = chat_burst(&mut walter, "m", 5);
    let _elsewhere = server.login_in("biology", "laura"); // another room's chat
    let mut maria = Client::connect_to(server.addr, "/r/algebra");
    let history = login_with_history(&mut maria, json!({"type": "login", "username": "maria"}));
    assert_eq!(history["room"], "algebra");
    assert_eq!(texts(&history), ["m2", "m3", "m4"]);
    // Each exactly as it was broadcast.
    assert_eq!(history["messages"][0], sent[2]);
    assert_eq!(history["messages"][2], sent[4]);
}

#[test]
fn only_the_first_login_on_a_socket_gets_history() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    chat_burst(&mut walter, "m", 2);
    let mut maria = Client::connect_to(server.addr, "/r/algebra");
    login_with_history(&mut maria, json!({"type": "login", "username": "maria"}));
    maria.send_json(json!({"type": "login", "username": "maria2"}));
    let renamed = maria.recv_json();
    assert_eq!(renamed["type"], "login", "{renamed}");
    assert_eq!(renamed["user_joined"], "maria2");
}

#[test]
fn a_reconnect_with_since_gets_exactly_what_it_missed() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    let mut maria = Client::connect_to(server.addr, "/r/algebra");
    login_with_history(&mut maria, json!({"type": "login", "username": "maria"}));
    walter.recv_json(); // maria joined
    let seen = chat_burst(&mut walter, "before", 3);
    for m in &seen {
        assert_eq!(maria.recv_json(), *m);
    }
    let last = seen[2]["id"].as_u64().unwrap();
    maria.vanish();
    walter.recv_until(|m| m["type"] == "disconnect");
    let missed = chat_burst(&mut walter, "missed", 4);
    let mut back = Client::connect_to(server.addr, "/r/algebra");
    let history = login_with_history(
        &mut back,
        json!({"type": "login", "username": "maria", "since": last}),
    );
    assert_eq!(history["complete"], true);
    assert_eq!(history["messages"].as_array().unwrap(), &missed);
    // And what comes after arrives once, live.
    walter.chat("after");
    let next = back.recv_until(|m| m["type"] == "chat");
    assert_eq!(next["text"], "after");
}

/// The next text message, as the raw text it came as.
fn recv_text(client: &mut Client) -> String {
    loop {
        match client.ws.read().expect("a message") {
            tungstenite::Message::Text(text) => return text.to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// A chat as large as a chat may be: 2,000 two-byte characters of text and
/// nearly the whole allowance of other fields: about 8 KB relayed.
fn big_chat(client: &mut Client, label: &str) {
    let padding = "p".repeat(threadchat::config::MAX_CHAT_EXTRA_BYTES - 100);
    let text = format!("{label} {}", "é".repeat(1990));
    client.send_json(json!({"type": "chat", "text": text, "padding": padding}));
}

fn ids(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .expect("messages is a list")
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_newcomers_history_is_one_message_within_its_byte_budget() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    let mut last = 0;
    for i in 0..30 {
        big_chat(&mut walter, &format!("m{i}"));
        last = walter.recv_json()["id"].as_u64().unwrap();
    }
    let mut maria = Client::connect_to(server.addr, "/r/algebra");
    maria.send_json(json!({"type": "login", "username": "maria"}));
    let text = recv_text(&mut maria);
    assert!(
        text.len() <= threadchat::config::HISTORY_MESSAGE_BYTES,
        "a history of {} bytes",
        text.len()
    );
    let history: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(history["type"], "history");
    // The newest that fit, in order; older ones are left out, and said so.
    let got = ids(&history["messages"]);
    assert!(got.len() >= 4 && got.len() < 30, "{got:?}");
    assert_eq!(
        got,
        ((last + 1 - got.len() as u64)..=last).collect::<Vec<_>>()
    );
    assert_eq!(history["complete"], false);
    assert_eq!(maria.recv_json()["type"], "login");
}

#[test]
fn a_long_catch_up_arrives_paged_in_order_and_complete() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    let first = chat_burst(&mut walter, "old", 1);
    let since = first[0]["id"].as_u64().unwrap();
    // About 650 KB missed: ten times what one message holds, and more than
    // the room keeps in memory.
    let mut last = 0;
    for i in 0..80 {
        big_chat(&mut walter, &format!("m{i}"));
        last = walter.recv_json()["id"].as_u64().unwrap();
    }
    let mut back = Client::connect_to(server.addr, "/r/algebra");
    back.send_json(json!({"type": "login", "username": "maria", "since": since}));
    let mut pages = Vec::new();
    loop {
        let text = recv_text(&mut back);
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] == "login" {
            break;
        }
        assert_eq!(message["type"], "history", "{message}");
        assert!(
            text.len() <= threadchat::config::HISTORY_MESSAGE_BYTES,
            "a page of {} bytes",
            text.len()
        );
        pages.push(message);
    }
    assert!(pages.len() > 1, "one message of all 80 chats");
    let (last_page, earlier) = pages.split_last().unwrap();
    for page in earlier {
        assert_eq!(page["more"], true);
        assert!(page.get("complete").is_none(), "{page}");
    }
    assert_eq!(last_page["complete"], true);
    assert!(last_page.get("more").is_none());
    let got: Vec<u64> = pages.iter().flat_map(|p| ids(&p["messages"])).collect();
    assert_eq!(got, ((since + 1)..=last).collect::<Vec<_>>());
}

#[test]
fn a_reconnect_past_the_memory_tail_is_answered_from_the_store() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    let first = chat_burst(&mut walter, "old", 1);
    let since = first[0]["id"].as_u64().unwrap();
    let missed = chat_burst(&mut walter, "m", 300); // more than a room keeps in memory
    let mut back = Client::connect_to(server.addr, "/r/algebra");
    let history = login_with_history(
        &mut back,
        json!({"type": "login", "username": "maria", "since": since}),
    );
    assert_eq!(history["complete"], true);
    assert_eq!(history["messages"].as_array().unwrap(), &missed);
}

#[test]
fn more_missed_than_history_max_gives_the_newest_and_complete_false() {
    let server = TestServer::with(Config {
        history_max: 3,
        ..unlimited()
    });
    let mut walter = server.login_in("algebra", "walter");
    let sent = chat_burst(&mut walter, "m", 6);
    let since = sent[0]["id"].as_u64().unwrap();
    let mut back = Client::connect_to(server.addr, "/r/algebra");
    let history = login_with_history(
        &mut back,
        json!({"type": "login", "username": "maria", "since": since}),
    );
    assert_eq!(history["complete"], false);
    assert_eq!(texts(&history), ["m3", "m4", "m5"]);
}

#[test]
fn an_unknown_since_gives_the_usual_history_and_complete_false() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    chat_burst(&mut walter, "m", 2);
    let mut back = Client::connect_to(server.addr, "/r/algebra");
    let history = login_with_history(
        &mut back,
        json!({"type": "login", "username": "maria", "since": 999_999}),
    );
    assert_eq!(history["complete"], false);
    assert_eq!(texts(&history), ["m0", "m1"]);
}

#[test]
fn a_bad_since_is_refused() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send_json(json!({"type": "login", "username": "walter", "since": "yesterday"}));
    assert_eq!(client.expect_error()["error"], "invalid since");
}

#[test]
fn older_messages_page_back_over_http() {
    let server = TestServer::with(unlimited());
    let mut walter = server.login_in("algebra", "walter");
    let sent = chat_burst(&mut walter, "m", 10);
    let page = |query: &str| -> Value {
        let (status, body) = server.get(&format!("/api/rooms/algebra/messages{query}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let newest = page("?limit=3");
    assert_eq!(texts(&newest), ["m7", "m8", "m9"]);
    let before = newest["messages"][0]["id"].as_u64().unwrap();
    let older = page(&format!("?before={before}&limit=4"));
    assert_eq!(texts(&older), ["m3", "m4", "m5", "m6"]);
    assert_eq!(older["messages"][0], sent[3]);
    assert_eq!(page("")["messages"].as_array().unwrap().len(), 10);
    assert_eq!(server.get("/api/rooms/algebra/messages?limit=201").0, 400);
    assert_eq!(server.get("/api/rooms/Bad%20Name/messages").0, 400);
    assert_eq!(texts(&page("?before=1")), Vec::<String>::new());
}

#[test]
fn a_page_is_refused_at_once_when_the_stores_read_queue_is_full() {
    use threadchat::archivist::{self, Read};
    use threadchat::http::{ApiRequest, Credentials, RequestHead, api};
    // A store that has fallen behind: its queue of reads full, nobody
    // taking from it.
    let (reads, _stalled) = archivist::read_queue();
    while reads
        .try_send(Read::Probe {
            reply: crossbeam_channel::bounded(1).0,
        })
        .is_ok()
    {}
    let (events, _dispatcher) = crossbeam_channel::bounded(1);
    let owners = api::Owners {
        events: &events,
        store: Some(&reads),
        auth: None,
    };
    let head = RequestHead {
        method: "GET".to_string(),
        path: "/api/rooms/algebra/messages".to_string(),
        version: 1,
        headers: Vec::new(),
    };
    let request = ApiRequest::Messages {
        room: "algebra".to_string(),
        before: None,
        limit: 10,
    };
    let response = api::answer(
        request,
        &Credentials::of(&head),
        &owners,
        &unlimited(),
        true,
    );
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("busy"), "{response}");
}

#[test]
fn ids_keep_increasing_across_a_restart() {
    let dir = TempDir::new("restart");
    let config = Config {
        db: dir.db(),
        ..unlimited()
    };
    let first = {
        let server = TestServer::with(config.clone());
        let mut walter = server.login_in("algebra", "walter");
        chat_burst(&mut walter, "m", 3)[2]["id"].as_u64().unwrap()
    };
    let server = TestServer::with(config);
    let mut maria = Client::connect_to(server.addr, "/r/algebra");
    let history = login_with_history(&mut maria, json!({"type": "login", "username": "maria"}));
    assert_eq!(texts(&history), ["m0", "m1", "m2"]);
    let next = chat_burst(&mut maria, "later", 1)[0]["id"]
        .as_u64()
        .unwrap();
    assert_eq!(next, first + 1);
}

#[test]
fn with_history_off_the_server_behaves_as_the_tutorial() {
    let server = TestServer::with(Config {
        history: 0,
        ..Config::ephemeral()
    });
    let mut walter = server.login("walter");
    walter.chat("hi");
    let echo = walter.recv_json();
    assert_eq!(
        echo,
        json!({"type": "chat", "text": "hi", "username": "walter", "room": "lobby"})
    );
    let mut maria = server.connect();
    maria.send_json(json!({"type": "login", "username": "maria"}));
    let first = maria.recv_json();
    assert_eq!(first["type"], "login", "no history message: {first}");
    assert_eq!(server.get("/api/rooms/lobby/messages").0, 404);
    assert_eq!(tutorial_view(&first)["user_joined"], "maria");
}
