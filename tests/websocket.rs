//! The WebSocket protocol keeps working through the reader/writer split:
//! control frames, fragmentation and the errors RFC 6455 asks a server to
//! close on.

mod common;

use std::io::Write;

use common::TestServer;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Bytes, Message};

#[test]
fn ping_is_answered_with_a_pong_carrying_the_same_payload() {
    let server = TestServer::start();
    let mut client = server.connect();
    client
        .ws
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .unwrap();
    match client.ws.read().unwrap() {
        Message::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[test]
fn pongs_do_not_interleave_with_broadcasts() {
    let server = TestServer::with(threadchat::Config {
        rate_limit: 0,
        ..threadchat::Config::ephemeral()
    });
    let mut walter = server.login("walter");
    for i in 0..200 {
        walter
            .ws
            .write(Message::Ping(Bytes::from(format!("p{i}"))))
            .unwrap();
        walter
            .ws
            .write(Message::text(format!(r#"{{"type":"chat","text":"m{i}"}}"#)))
            .unwrap();
    }
    walter.ws.flush().unwrap();
    let (mut pongs, mut chats) = (0, 0);
    while pongs < 200 || chats < 200 {
        match walter.ws.read().expect("every frame decodes") {
            Message::Pong(payload) => {
                assert_eq!(payload, format!("p{pongs}").as_bytes());
                pongs += 1;
            }
            Message::Text(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["text"], format!("m{chats}"), "{v}");
                chats += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_clients_close_is_echoed_and_the_tcp_connection_then_closed() {
    let server = TestServer::start();
    let mut client = server.connect();
    client
        .ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    let echoed = client.expect_close().expect("close frame has a code");
    assert_eq!(echoed.code, CloseCode::Normal);
    // After the echo the server closes TCP: tungstenite reports that as a
    // clean end, not as a reset or a timeout.
    match client.ws.read() {
        Err(WsError::ConnectionClosed) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
}

#[test]
fn fragmented_messages_are_reassembled() {
    let server = TestServer::start();
    let mut walter = server.login("walter");
    let whole = r#"{"type":"chat","text":"in three parts"}"#;
    let (a, rest) = whole.split_at(10);
    let (b, c) = rest.split_at(10);
    let frames = [
        Frame::message(a.as_bytes().to_vec(), OpCode::Data(Data::Text), false),
        Frame::message(b.as_bytes().to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(c.as_bytes().to_vec(), OpCode::Data(Data::Continue), true),
    ];
    for frame in frames {
        walter.ws.write(Message::Frame(frame)).unwrap();
    }
    walter.ws.flush().unwrap();
    assert_eq!(walter.recv_json()["text"], "in three parts");
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start();
    let mut client = server.connect();
    let frame = Frame::message(vec![0x7b, 0xff, 0xfe, 0x7d], OpCode::Data(Data::Text), true);
    client.ws.send(Message::Frame(frame)).unwrap();
    let close = client.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Invalid);
}

#[test]
fn unmasked_client_frames_are_refused_with_1002() {
    let server = TestServer::start();
    let mut client = server.connect();
    // A text frame "hi" without the mask bit, written past tungstenite.
    client
        .ws
        .get_mut()
        .write_all(&[0x81, 0x02, b'h', b'i'])
        .unwrap();
    let close = client.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Protocol);
}

#[test]
fn a_message_over_the_size_limit_closes_with_1009() {
    let server = TestServer::start();
    let mut client = server.login("walter");
    let text = "x".repeat(threadchat::config::DEFAULT_MAX_MESSAGE_BYTES + 1);
    client.send_text(&text);
    let close = client.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Size);
}

#[test]
fn a_fragmented_message_over_the_size_limit_closes_with_1009() {
    let server = TestServer::start();
    let mut client = server.connect();
    let half = vec![b'x'; threadchat::config::DEFAULT_MAX_MESSAGE_BYTES / 2 + 1];
    client
        .ws
        .write(Message::Frame(Frame::message(
            half.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .unwrap();
    client
        .ws
        .write(Message::Frame(Frame::message(
            half,
            OpCode::Data(Data::Continue),
            true,
        )))
        .unwrap();
    client.ws.flush().unwrap();
    let close = client.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Size);
}

#[test]
fn binary_messages_get_an_error_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    let error = client.expect_error();
    assert_eq!(error["error"], "binary messages are not supported");
    client.login("walter");
}

#[test]
fn nothing_is_sent_after_the_close_frame_even_while_broadcasts_flow() {
    let server = TestServer::with(threadchat::Config {
        rate_limit: 0,
        ..threadchat::Config::ephemeral()
    });
    let mut talker = server.login("talker");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let talking = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                talker.chat("busy");
                talker.recv_until(|m| m["type"] == "chat");
            }
        })
    };
    for i in 0..20 {
        let mut walter = server.login(&format!("walter{i}"));
        walter.recv_until(|m| m["type"] == "chat");
        walter.ws.close(None).unwrap();
        walter.expect_close();
        // After the close echo a frame of any kind would be a protocol error;
        // only the end of the connection may follow.
        match walter.ws.read() {
            Err(WsError::ConnectionClosed) => {}
            other => panic!("expected the end of the connection, got {other:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    talking.join().unwrap();
}
