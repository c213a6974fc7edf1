//! Rooms: the WebSocket path names the room, and a room hears only itself.

mod common;

use common::{Client, TestServer, users};
use serde_json::{Value, json};
use threadchat::Config;

/// The status of a WebSocket handshake on `path`, and the body of a refusal.
fn handshake(server: &TestServer, path: &str) -> (u16, String) {
    match tungstenite::connect(format!("ws://{}{path}", server.addr)) {
        Ok((_, response)) => (response.status().as_u16(), String::new()),
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("handshake on {path} failed: {e}"),
    }
}

/// `/api/rooms`, parsed.
fn rooms(server: &TestServer) -> Value {
    let (status, body) = server.get("/api/rooms");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/api/rooms is JSON")
}

#[test]
fn a_room_hears_only_its_own_chat_and_presence() {
    let server = TestServer::start();
    let mut a1 = server.login_in("algebra", "walter");
    let mut b1 = server.login_in("biology", "maria");
    let mut a2 = server.login_in("algebra", "laura");
    // walter hears laura join algebra; maria hears nothing of it.
    let joined = a1.recv_json();
    assert_eq!(users(&joined), ["walter", "laura"]);
    assert_eq!(joined["room"], "algebra");
    a2.chat("only for algebra");
    assert_eq!(a1.recv_json()["text"], "only for algebra");
    assert_eq!(a2.recv_json()["text"], "only for algebra");
    a2.send_json(json!({"type": "disconnect"}));
    assert_eq!(a1.recv_json()["user_left"], "laura");
    // maria's next message is her own chat: nothing of algebra reached her.
    b1.chat("biology here");
    let next = b1.recv_json();
    assert_eq!(next["text"], "biology here");
    assert_eq!(next["room"], "biology");
    assert_eq!(next["username"], "maria");
    // and walter's next is not maria's chat.
    a1.chat("still algebra");
    assert_eq!(a1.recv_json()["text"], "still algebra");
}

#[test]
fn the_root_path_and_r_lobby_are_the_same_room() {
    let server = TestServer::start();
    let mut tutorial = server.login("walter");
    let mut lobby = server.login_in("lobby", "maria");
    let joined = tutorial.recv_json();
    assert_eq!(users(&joined), ["walter", "maria"]);
    assert_eq!(joined["room"], "lobby");
    lobby.chat("hello lobby");
    assert_eq!(tutorial.recv_json()["text"], "hello lobby");
}

#[test]
fn the_same_name_may_be_used_in_two_rooms_but_not_twice_in_one() {
    let server = TestServer::start();
    let _a = server.login_in("algebra", "walter");
    let _b = server.login_in("biology", "Walter");
    let mut again = Client::connect_to(server.addr, "/r/algebra");
    again.send_json(json!({"type": "login", "username": "WALTER"}));
    assert_eq!(again.expect_error()["error"], "username is taken");
}

#[test]
fn room_names_are_case_insensitive_and_reported_in_lower_case() {
    let server = TestServer::start();
    let mut upper = Client::connect_to(server.addr, "/r/Algebra");
    let joined = upper.login("walter");
    assert_eq!(joined["room"], "algebra");
    let mut lower = Client::connect_to(server.addr, "/r/algebra");
    assert_eq!(users(&lower.login("maria")), ["walter", "maria"]);
}

#[test]
fn bad_room_paths_get_404_before_the_upgrade() {
    let server = TestServer::start();
    for path in ["/chat", "/r/", "/r/a%20b", "/r/x/y", "/r/über", "/rooms/a"] {
        let (status, body) = handshake(&server, path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.trim().is_empty(), "{path}: the 404 says why");
    }
    let too_long = format!("/r/{}", "a".repeat(33));
    assert_eq!(handshake(&server, &too_long).0, 404);
    assert_eq!(handshake(&server, &format!("/r/{}", "a".repeat(32))).0, 101);
}

#[test]
fn past_max_rooms_a_new_room_gets_503_and_existing_rooms_still_open() {
    let server = TestServer::with(Config {
        max_rooms: 2,
        ..Config::ephemeral()
    });
    let _a = Client::connect_to(server.addr, "/r/one");
    let _b = Client::connect_to(server.addr, "/r/two");
    let (status, body) = handshake(&server, "/r/three");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("rooms"), "{body}");
    // A room that exists is not a new one.
    let mut more = Client::connect_to(server.addr, "/r/one");
    more.login("walter");
}

#[test]
fn a_room_is_gone_once_its_last_connection_is() {
    let server = TestServer::with(Config {
        max_rooms: 1,
        ..Config::ephemeral()
    });
    for round in 0..3 {
        // Only one room fits, so each round's room opens only once the
        // previous round's room is gone.
        let room = format!("/r/round{round}");
        let mut first = None;
        let opened = common::eventually(common::WAIT, || {
            first = try_connect(&server, &room);
            first.is_some()
        });
        assert!(opened, "the room before {room} outlived its connections");
        let mut a = first.unwrap();
        a.login("walter");
        let b = Client::connect_to(server.addr, &room);
        b.vanish();
        a.ws.close(None).unwrap();
        while a.ws.read().is_ok() {} // until the server has closed too
    }
}

/// A client on `path`, or `None` if the handshake is refused.
fn try_connect(server: &TestServer, path: &str) -> Option<Client> {
    let stream = std::net::TcpStream::connect(server.addr).ok()?;
    stream.set_read_timeout(Some(common::WAIT)).ok()?;
    let url = format!("ws://{}{path}", server.addr);
    let stream = common::tls::Transport::Plain(stream);
    let (ws, _) = tungstenite::client::client(url, stream).ok()?;
    Some(Client { ws })
}

#[test]
fn api_rooms_lists_rooms_with_logged_in_users_sorted_by_name() {
    let server = TestServer::start();
    assert_eq!(rooms(&server), json!({"rooms": []}));
    let _w = server.login_in("zoology", "walter");
    let _m = server.login_in("algebra", "maria");
    let mut l = server.login_in("algebra", "laura");
    let _idle = Client::connect_to(server.addr, "/r/empty"); // not logged in
    let _t = server.login("tutorial");
    assert_eq!(
        rooms(&server),
        json!({"rooms": [
            {"name": "algebra", "users": 2},
            {"name": "lobby", "users": 1},
            {"name": "zoology", "users": 1},
        ]})
    );
    l.send_json(json!({"type": "disconnect"}));
    l.barrier_while_logged_out();
    assert_eq!(
        rooms(&server)["rooms"][0],
        json!({"name": "algebra", "users": 1})
    );
    let response = common::raw_http(server.addr, b"GET /api/rooms HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(response.contains("Cache-Control: no-store"), "{response}");
    assert!(response.contains("application/json"), "{response}");
}

#[test]
fn the_page_is_served_at_a_rooms_path() {
    let server = TestServer::start();
    let (status, body) = server.get("/r/algebra");
    assert_eq!(status, 200);
    assert!(
        body.contains("<html") || body.contains("<!DOCTYPE"),
        "{body}"
    );
    assert_eq!(server.get("/r/no%20such").0, 404);
}

#[test]
fn the_pages_files_are_served_beside_every_room_page() {
    let server = TestServer::start();
    for path in [
        "/client.js",
        "/moderation.js",
        "/index.css",
        "/r/client.js",
        "/r/moderation.js",
        "/r/index.css",
    ] {
        assert_eq!(server.get(path).0, 200, "{path}");
    }
}
