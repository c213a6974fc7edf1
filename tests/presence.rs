//! A user leaves exactly once, however the connection ends.

mod common;

use std::time::Duration;

use common::{TestServer, eventually, online_besides_probe, tutorial_view, users};
use serde_json::json;

/// Waits until only `n` connections are open, so that every event of the
/// closed ones has reached the dispatcher.
fn settle(server: &TestServer, n: usize) {
    assert!(
        eventually(Duration::from_secs(10), || server.handle().connections()
            == n),
        "connections did not settle at {n}"
    );
}

/// After `settle`, a chat of the observer's own is the next thing it gets,
/// unless a second departure was broadcast meanwhile.
fn assert_nothing_else_pending(observer: &mut common::Client) {
    observer.chat("barrier");
    let next = observer.recv_json();
    assert_eq!(next["text"], "barrier", "unexpected extra message {next}");
}

#[test]
fn an_abrupt_close_is_broadcast_as_exactly_one_disconnect() {
    let server = TestServer::start();
    let walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.vanish();
    let left = maria.recv_json();
    assert_eq!(
        tutorial_view(&left),
        json!({"type": "disconnect", "user_left": "walter", "active_users": ["maria"]})
    );
    settle(&server, 1);
    assert_nothing_else_pending(&mut maria);
}

#[test]
fn a_disconnect_message_followed_by_close_is_broadcast_once() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.send_json(json!({"type": "disconnect", "username": "walter"}));
    walter.ws.close(None).unwrap();
    let left = maria.recv_json();
    assert_eq!(left["user_left"], "walter");
    settle(&server, 1);
    assert_nothing_else_pending(&mut maria);
}

#[test]
fn a_close_frame_without_disconnect_is_broadcast_once() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.ws.close(None).unwrap();
    walter.expect_close();
    assert_eq!(maria.recv_json()["user_left"], "walter");
    settle(&server, 1);
    assert_nothing_else_pending(&mut maria);
}

#[test]
fn a_user_who_left_is_gone_from_the_list_and_the_name_is_free_again() {
    let server = TestServer::start();
    let walter = server.login("walter");
    server.login("maria").vanish();
    walter.vanish();
    settle(&server, 0);
    assert!(online_besides_probe(&server, "probe").is_empty());
    let mut again = server.connect();
    assert_eq!(users(&again.login("walter")), ["walter"]);
}

#[test]
fn a_login_under_ones_own_name_costs_the_room_nothing() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json(); // maria's login
    for _ in 0..5 {
        walter.send_json(json!({"type": "login", "username": "walter"}));
        // Walter alone is answered, as a login is: who is in.
        let again = walter.recv_json();
        assert_eq!(
            tutorial_view(&again),
            json!({"type": "login", "user_joined": "walter", "active_users": ["walter", "maria"]})
        );
    }
    // Maria heard nothing of it: her next message is her own chat.
    maria.chat("barrier");
    assert_eq!(maria.recv_json()["text"], "barrier");
    // Another case of the name is a rename, which the room hears.
    walter.send_json(json!({"type": "login", "username": "Walter"}));
    let renamed = maria.recv_json();
    assert_eq!(renamed["user_joined"], "Walter");
    assert_eq!(users(&renamed), ["Walter", "maria"]);
}
