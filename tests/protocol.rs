//! The tutorial's protocol, one test per rule, over real sockets.

mod common;

use common::{TestServer, tutorial_view, users};
use serde_json::json;

#[test]
fn login_is_broadcast_to_everyone_including_the_new_user_in_join_order() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.connect();
    let to_maria = maria.login("maria");
    assert_eq!(users(&to_maria), ["walter", "maria"]);
    let to_walter = walter.recv_json();
    assert_eq!(to_walter, to_maria);
    let mut laura = server.connect();
    let to_laura = laura.login("laura");
    assert_eq!(
        tutorial_view(&to_laura),
        json!({"type": "login", "user_joined": "laura", "active_users": ["walter", "maria", "laura"]})
    );
    assert_eq!(walter.recv_json(), to_laura);
    assert_eq!(maria.recv_json(), to_laura);
}

#[test]
fn disconnect_is_broadcast_to_the_remaining_users() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json(); // maria joined
    walter.send_json(json!({"type": "disconnect", "username": "walter"}));
    let left = maria.recv_json();
    assert_eq!(
        tutorial_view(&left),
        json!({"type": "disconnect", "user_left": "walter", "active_users": ["maria"]})
    );
    // walter is no longer logged in, so he hears nothing more: the next thing
    // he gets is the dispatcher's answer to his own (refused) chat.
    walter.barrier_while_logged_out();
}

#[test]
fn chat_is_relayed_to_every_logged_in_user_including_the_sender() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json();
    walter.send_json(json!({"type": "chat", "text": "is this working?", "username": "walter"}));
    let expected = json!({"type": "chat", "text": "is this working?", "username": "walter"});
    assert_eq!(tutorial_view(&walter.recv_json()), expected);
    assert_eq!(tutorial_view(&maria.recv_json()), expected);
}

#[test]
fn chat_username_is_stamped_with_the_senders_login() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json();
    maria.send_json(json!({"type": "chat", "text": "I am walter", "username": "walter"}));
    let relayed = walter.recv_json();
    assert_eq!(relayed["username"], "maria");
    assert_eq!(relayed["text"], "I am walter");
}

#[test]
fn chat_keeps_extra_fields_of_the_chat_object() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    walter.send_json(json!({"type": "chat", "text": "hi", "username": "walter", "seq": 7}));
    assert_eq!(
        tutorial_view(&walter.recv_json()),
        json!({"type": "chat", "text": "hi", "username": "walter", "seq": 7})
    );
}

#[test]
fn unknown_type_is_not_relayed_and_the_sender_is_told() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json();
    walter.send_json(json!({"type": "shout", "text": "HELLO"}));
    let error = walter.expect_error();
    assert_eq!(error["error"], "unknown message type");
    // maria's next message is the chat below, not the shout.
    walter.chat("after");
    assert_eq!(maria.recv_json()["text"], "after");
}

#[test]
fn invalid_json_gets_an_error_only_to_the_sender_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json();
    walter.send_text("{not json");
    let error = walter.expect_decoding_error();
    assert!(!error["details"].as_str().unwrap().is_empty());
    walter.chat("still here");
    assert_eq!(walter.recv_json()["text"], "still here");
    assert_eq!(maria.recv_json()["text"], "still here");
}

#[test]
fn json_that_is_not_an_object_is_refused() {
    let server = TestServer::start();
    let mut walter = server.connect();
    for text in ["[1,2]", "\"login\"", "null", "{\"type\": 5}"] {
        walter.send_text(text);
        walter.expect_error();
    }
    walter.login("walter");
}

#[test]
fn sockets_not_logged_in_receive_no_broadcasts() {
    let server = TestServer::start();
    let mut lurker = server.connect();
    let mut walter = server.login("walter");
    walter.chat("hello?");
    assert_eq!(walter.recv_json()["text"], "hello?");
    // Had the lurker been sent walter's login or chat, it would come before
    // the dispatcher's reply to this.
    lurker.barrier_while_logged_out();
}

#[test]
fn second_login_on_a_socket_renames_the_user() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json();
    let renamed = walter.login("heisenberg");
    assert_eq!(users(&renamed), ["heisenberg", "maria"]);
    assert_eq!(maria.recv_json(), renamed);
    walter.chat("say my name");
    assert_eq!(maria.recv_json()["username"], "heisenberg");
}

#[test]
fn a_logged_out_socket_can_log_in_again() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    walter.send_json(json!({"type": "disconnect", "username": "walter"}));
    walter.barrier_while_logged_out();
    let again = walter.login("walter");
    assert_eq!(users(&again), ["walter"]);
}
