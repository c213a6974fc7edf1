//! Nobody can speak as someone else, and names are sane and unique.

mod common;

use common::{TestServer, users};
use serde_json::json;

#[test]
fn chat_before_login_is_refused_and_not_broadcast() {
    let server = TestServer::start();
    let mut maria = server.login("maria");
    let mut stranger = server.connect();
    stranger.send_json(json!({"type": "chat", "text": "hi", "username": "maria"}));
    let error = stranger.expect_error();
    assert_eq!(error["error"], "not logged in");
    assert_eq!(error["request"], "chat");
    maria.chat("only me");
    assert_eq!(maria.recv_json()["text"], "only me");
}

#[test]
fn disconnect_before_login_is_refused() {
    let server = TestServer::start();
    let mut stranger = server.connect();
    stranger.send_json(json!({"type": "disconnect", "username": "maria"}));
    let error = stranger.expect_error();
    assert_eq!(error["request"], "disconnect");
}

#[test]
fn usernames_are_trimmed() {
    let server = TestServer::start();
    let mut walter = server.connect();
    walter.send_json(json!({"type": "login", "username": "  walter \t"}));
    let joined = walter.recv_until(|m| m["type"] == "login");
    assert_eq!(joined["user_joined"], "walter");
    assert_eq!(users(&joined), ["walter"]);
}

#[test]
fn invalid_usernames_are_refused_with_an_error() {
    let server = TestServer::start();
    let mut client = server.connect();
    let long = "w".repeat(33);
    for bad in [
        json!(""),
        json!("   "),
        json!(long),
        json!("wal\nter"),
        json!("a\u{7}b"),
        json!(42),
    ] {
        client.send_json(json!({"type": "login", "username": bad}));
        let error = client.expect_error();
        assert_eq!(error["request"], "login", "{bad}: {error}");
    }
    // 32 characters (not bytes) is fine.
    client.login(&"ü".repeat(32));
}

#[test]
fn a_name_taken_ignoring_case_is_refused_and_nothing_changes_for_anyone() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut impostor = server.connect();
    impostor.send_json(json!({"type": "login", "username": "WALTER"}));
    let error = impostor.expect_error();
    assert_eq!(error["error"], "username is taken");
    assert_eq!(error["request"], "login");
    // The impostor is still not logged in, and walter heard nothing of it.
    impostor.barrier_while_logged_out();
    walter.chat("still just me");
    assert_eq!(walter.recv_json()["text"], "still just me");
    let joined = impostor.login("jesse");
    assert_eq!(users(&joined), ["walter", "jesse"]);
}

#[test]
fn a_user_may_rename_to_another_case_of_their_own_name() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let renamed = walter.login("Walter");
    assert_eq!(users(&renamed), ["Walter"]);
}

#[test]
fn a_rename_frees_the_old_name() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    walter.login("heisenberg");
    let mut other = server.connect();
    let joined = other.login("walter");
    assert_eq!(users(&joined), ["heisenberg", "walter"]);
}

#[test]
fn a_look_alike_name_is_taken_and_an_invisible_one_refused() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut impostor = server.connect();
    // A Cyrillic "а" in place of the Latin "a": the same name to the eye.
    impostor.send_json(json!({"type": "login", "username": "w\u{430}lter"}));
    let error = impostor.expect_error();
    assert_eq!(error["error"], "username is taken", "{error}");
    // A zero-width space and a right-to-left override: names that hide.
    for hidden in ["wal\u{200B}ter", "\u{202E}retlaw", "\u{3164}"] {
        impostor.send_json(json!({"type": "login", "username": hidden}));
        let error = impostor.expect_error();
        assert_eq!(error["error"], "invalid username", "{hidden:?}: {error}");
    }
    // The same name typed as "e" and a combining accent is the composed one.
    impostor.send_json(json!({"type": "login", "username": "Jose\u{301}"}));
    let joined = impostor.recv_until(|m| m["type"] == "login");
    assert_eq!(joined["user_joined"], "José");
    walter.recv_until(|m| m["type"] == "login" && m["user_joined"] == "José");
}
