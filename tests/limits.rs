//! Limits on what one client may send.

mod common;

use common::TestServer;
use serde_json::json;
use threadchat::Config;
use tungstenite::protocol::frame::coding::CloseCode;

#[test]
fn chat_text_over_the_limit_is_refused_and_not_relayed() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let limit = threadchat::config::DEFAULT_MAX_CHAT_CHARS;
    walter.chat(&"é".repeat(limit + 1));
    let error = walter.expect_error();
    assert_eq!(error["error"], "message too long");
    assert_eq!(error["request"], "chat");
    walter.chat(&"é".repeat(limit));
    assert_eq!(
        walter.recv_json()["text"].as_str().unwrap().chars().count(),
        limit
    );
}

#[test]
fn empty_chat_text_is_refused() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    walter.chat("   ");
    assert_eq!(walter.expect_error()["error"], "empty message");
}

#[test]
fn messages_over_the_rate_are_refused_with_an_error_and_dropped() {
    let server = TestServer::with(Config {
        rate_limit: 5,
        ..Config::ephemeral()
    });
    let mut walter = server.connect();
    // The login and nine chats fit the burst of 10 (2 × 5); the 11th and 12th
    // are refused unless the bucket refilled meanwhile (a token every 200 ms).
    walter.login("walter");
    let started = std::time::Instant::now();
    for i in 0..11 {
        walter.chat(&format!("m{i}"));
    }
    let mut relayed = 0;
    let mut refused = 0;
    for _ in 0..11 {
        let message = walter.recv_json();
        match message["type"].as_str() {
            Some("chat") => relayed += 1,
            Some("error") => {
                assert_eq!(message["error"], "rate limit exceeded");
                assert_eq!(message["request"], "chat");
                refused += 1;
            }
            _ => panic!("unexpected {message}"),
        }
    }
    let refills = (started.elapsed().as_millis() / 200) as i32;
    assert!(
        refused >= 2 - refills,
        "relayed {relayed}, refused {refused}"
    );
    assert!(relayed >= 9);
}

#[test]
fn sustained_flooding_closes_the_connection_with_1008() {
    let server = TestServer::with(Config {
        rate_limit: 1,
        ..Config::ephemeral()
    });
    let mut flooder = server.connect();
    for i in 0..threadchat::config::RATE_LIMIT_STRIKES + 10 {
        // The server may already have closed; later sends may fail.
        if flooder
            .ws
            .send(tungstenite::Message::text(format!(
                "{{\"type\":\"chat\",\"text\":\"{i}\"}}"
            )))
            .is_err()
        {
            break;
        }
    }
    let close = flooder.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Policy);
}

/// A flooder that goes on sending after the server's close frame (it has
/// not read it yet) still gets to read it, code and all: the server reads
/// on for the client's answering close before it closes the socket, rather
/// than close with input unread, which makes the kernel reset the
/// connection and can destroy the close frame before it is read.
#[test]
fn a_flooder_that_sends_on_after_the_close_still_reads_the_1008() {
    let server = TestServer::with(Config {
        rate_limit: 1,
        ..Config::ephemeral()
    });
    let mut flooder = server.connect();
    for i in 0..threadchat::config::RATE_LIMIT_STRIKES + 300 {
        let chat = format!("{{\"type\":\"chat\",\"text\":\"{i}\"}}");
        if flooder.ws.send(tungstenite::Message::text(chat)).is_err() {
            break;
        }
    }
    let close = flooder.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Policy);
}

#[test]
fn a_smaller_configured_message_limit_is_enforced() {
    let server = TestServer::with(Config {
        max_message_bytes: 1024,
        ..Config::ephemeral()
    });
    let mut walter = server.login("walter");
    walter.chat(&"a".repeat(900));
    assert_eq!(walter.recv_json()["type"], "chat");
    walter.chat(&"a".repeat(1100));
    assert_eq!(walter.expect_close().unwrap().code, CloseCode::Size);
}

#[test]
fn deeply_nested_json_is_refused_without_harm() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let depth = 20_000;
    let nested = format!(
        "{{\"type\":\"chat\",\"text\":\"x\",\"extra\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    walter.send_text(&nested);
    walter.expect_decoding_error();
    // Nesting within serde_json's limit passes, as part of the chat object.
    let fine = format!(
        "{{\"type\":\"chat\",\"text\":\"y\",\"extra\":{}{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    walter.send_text(&fine);
    assert_eq!(walter.recv_json()["text"], "y");
}

#[test]
fn a_chat_whose_other_fields_exceed_the_bound_is_refused_and_not_relayed() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json(); // maria's login
    let limit = threadchat::config::MAX_CHAT_EXTRA_BYTES;
    // A short text, and a field far bigger than the text limit allows.
    walter.send_json(json!({"type": "chat", "text": "hi", "padding": "x".repeat(limit)}));
    let error = walter.expect_error();
    assert_eq!(error["error"], "message too large");
    assert_eq!(error["request"], "chat");
    // Maria got nothing of it: her next message is her own chat.
    maria.chat("after");
    assert_eq!(maria.recv_json()["text"], "after");
}

#[test]
fn extra_fields_within_the_bound_are_relayed_as_sent() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json(); // maria's login
    // Counted as relayed: `"type":"chat",` is 14 bytes, `"color":"teal",`
    // 15, and `"padding":"…",` 13 and its value's length.
    let limit = threadchat::config::MAX_CHAT_EXTRA_BYTES;
    let at_the_bound = limit - 14 - 15 - 13;
    let padding = "x".repeat(at_the_bound + 1);
    walter.send_json(json!({
        "type": "chat", "text": "hi", "color": "teal", "padding": padding,
    }));
    let error = walter.recv_json();
    assert_eq!(
        error["error"], "message too large",
        "one byte over: {error}"
    );
    let padding = "x".repeat(at_the_bound);
    walter.send_json(json!({
        "type": "chat", "text": "hi", "color": "teal", "padding": padding,
    }));
    for client in [&mut walter, &mut maria] {
        let chat = client.recv_json();
        assert_eq!(
            (&chat["text"], &chat["color"], &chat["padding"]),
            (&json!("hi"), &json!("teal"), &json!(padding))
        );
    }
}

#[test]
fn a_flood_of_renames_is_refused_by_the_rate_limit() {
    let server = TestServer::with(Config {
        rate_limit: 5,
        ..Config::ephemeral()
    });
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json(); // maria's login
    // Thirty renames at once: the burst (2 × 5, the login included) passes,
    // the rest are refused, unless the bucket refilled meanwhile.
    let started = std::time::Instant::now();
    for i in 0..30 {
        walter.send_json(json!({"type": "login", "username": format!("w{i}")}));
    }
    let (mut renamed, mut refused) = (0, 0);
    for _ in 0..30 {
        let message = walter.recv_json();
        match message["type"].as_str() {
            Some("login") => renamed += 1,
            Some("error") => {
                assert_eq!(message["error"], "rate limit exceeded");
                assert_eq!(message["request"], "login");
                refused += 1;
            }
            _ => panic!("unexpected {message}"),
        }
    }
    let refills = (started.elapsed().as_millis() / 200) as usize;
    assert!(
        renamed <= 9 + refills,
        "renamed {renamed}, refused {refused}"
    );
    assert!(
        refused >= 21 - refills,
        "renamed {renamed}, refused {refused}"
    );
    // The room heard only the renames that passed.
    for _ in 0..renamed {
        assert_eq!(maria.recv_json()["type"], "login");
    }
    maria.chat("after");
    assert_eq!(maria.recv_json()["text"], "after");
}
