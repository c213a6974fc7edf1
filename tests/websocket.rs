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

// ---------------------------------------------------------------------------
// The conformance echo (`--conformance-echo`): the path the Autobahn
// TestSuite runs on (`tests/conformance.rs`) behaves as that suite assumes,
// and is nothing more than an echo.

/// A server with the echo on `/echo`, otherwise the test defaults.
fn echo_server(config: threadchat::Config) -> TestServer {
    TestServer::with(threadchat::Config {
        conformance_echo: Some("/echo".to_string()),
        ..config
    })
}

#[test]
fn the_conformance_echo_sends_every_message_back_as_it_came() {
    let server = echo_server(threadchat::Config::ephemeral());
    let mut client = common::Client::connect_to(server.addr, "/echo");
    client.send_text("hello, ünïcødé");
    assert_eq!(client.ws.read().unwrap(), Message::text("hello, ünïcødé"));
    client.ws.send(Message::binary(vec![0, 1, 255])).unwrap();
    assert_eq!(client.ws.read().unwrap(), Message::binary(vec![0, 1, 255]));
    // A fragmented message comes back whole.
    for (part, opcode, last) in [
        ("in ", Data::Text, false),
        ("three ", Data::Continue, false),
        ("parts", Data::Continue, true),
    ] {
        let frame = Frame::message(part.as_bytes().to_vec(), OpCode::Data(opcode), last);
        client.ws.write(Message::Frame(frame)).unwrap();
    }
    client.ws.flush().unwrap();
    assert_eq!(client.ws.read().unwrap(), Message::text("in three parts"));
}

#[test]
fn the_conformance_echo_is_off_unless_asked_for() {
    let server = TestServer::start();
    let handshake = format!(
        "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let response = common::raw_http(server.addr, handshake.as_bytes());
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[test]
fn an_echo_connection_is_never_a_chat_member() {
    let server = echo_server(threadchat::Config::ephemeral());
    let mut walter = server.login("walter");
    let mut echo = common::Client::connect_to(server.addr, "/echo");
    // Chat requests on the echo path are only text to send back.
    for text in [
        r#"{"type":"login","username":"mallory"}"#,
        r#"{"type":"chat","text":"hi all"}"#,
    ] {
        echo.send_text(text);
        assert_eq!(echo.ws.read().unwrap(), Message::text(text));
    }
    // Had they reached the dispatcher, walter would see mallory's login and
    // chat before the probe's login, and the probe would see mallory.
    assert_eq!(common::online_besides_probe(&server, "probe"), ["walter"]);
    let next = walter.recv_json();
    assert_eq!(
        (&next["type"], &next["user_joined"]),
        (&"login".into(), &"probe".into()),
        "{next}"
    );
}

#[test]
fn the_conformance_echo_keeps_the_message_size_limit() {
    let server = echo_server(threadchat::Config::ephemeral());
    let mut client = common::Client::connect_to(server.addr, "/echo");
    let limit = threadchat::config::DEFAULT_MAX_MESSAGE_BYTES;
    let largest = "x".repeat(limit);
    client.send_text(&largest);
    assert_eq!(client.ws.read().unwrap(), Message::text(largest));
    client.send_text(&"x".repeat(limit + 1));
    let close = client.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Size);
}

#[test]
fn the_conformance_echo_keeps_the_rate_limit() {
    let server = echo_server(threadchat::Config {
        rate_limit: 1, // a burst of two
        ..threadchat::Config::ephemeral()
    });
    let mut client = common::Client::connect_to(server.addr, "/echo");
    for text in ["one", "two", "three"] {
        client.send_text(text);
    }
    assert_eq!(client.ws.read().unwrap(), Message::text("one"));
    assert_eq!(client.ws.read().unwrap(), Message::text("two"));
    assert_eq!(client.expect_error()["error"], "rate limit exceeded");
}

#[test]
fn an_echo_connection_is_closed_with_1001_when_the_server_stops() {
    let server = echo_server(threadchat::Config::ephemeral());
    let mut client = common::Client::connect_to(server.addr, "/echo");
    client.send_text("here");
    assert_eq!(client.ws.read().unwrap(), Message::text("here"));
    let stopping = std::thread::spawn(move || server.shutdown());
    let close = client.expect_close().expect("close frame has a code");
    assert_eq!(close.code, CloseCode::Away);
    assert!(
        stopping.join().unwrap(),
        "every connection ended within the grace period"
    );
}

#[test]
fn a_quiet_client_is_pinged_once_per_ping_interval() {
    // An echo's reader wakes every ECHO_STOP_POLL (250 ms) to look at the
    // server, so it wakes four times per ping interval here.
    let interval = std::time::Duration::from_secs(1);
    let server = echo_server(threadchat::Config {
        ping_interval: interval,
        idle_timeout: interval * 10,
        ..threadchat::Config::ephemeral()
    });
    let client = common::Client::connect_to(server.addr, "/echo");
    // Read raw bytes, so that no pong answers a ping and the client stays
    // silent: an unanswered ping must not be repeated at every wake-up.
    let mut socket = client.ws.get_ref().try_clone().unwrap();
    let window = interval * 5 / 2;
    let deadline = std::time::Instant::now() + window;
    let mut received = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))
            .unwrap();
        let mut buffer = [0u8; 64];
        match std::io::Read::read(&mut socket, &mut buffer) {
            Ok(0) => panic!("the server closed a connection it should only ping"),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    // Each ping is two bytes: FIN and opcode 0x9, an empty payload.
    assert!(
        received.chunks(2).all(|frame| frame == [0x89, 0x00]),
        "{received:?}"
    );
    let pings = received.len() / 2;
    assert!(
        (1..=3).contains(&pings),
        "{pings} pings in {window:?} at one per {interval:?}"
    );
}
