//! Connections that stall are dropped, and nobody waits with them.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use common::{TestServer, WAIT};
use threadchat::Config;
use tungstenite::Message;
use tungstenite::protocol::frame::FrameSocket;
use tungstenite::protocol::frame::coding::{CloseCode, Control, OpCode};

#[test]
fn a_connection_that_never_finishes_its_handshake_is_dropped_and_delays_nobody() {
    let server = TestServer::with(Config {
        handshake_timeout: Duration::from_millis(500),
        ..Config::ephemeral()
    });
    // Half a request, then silence.
    let mut loris = TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(&mut loris, b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Meanwhile a real client connects and chats at once.
    let mut walter = server.login("walter");
    walter.chat("not waiting");
    assert_eq!(walter.recv_json()["text"], "not waiting");
    // The half-open connection is closed by the server.
    loris.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(loris.read(&mut buf).expect("closed, not timed out"), 0);
}

#[test]
fn a_silent_client_is_pinged_then_dropped_after_the_idle_timeout() {
    let server = TestServer::with(Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..Config::ephemeral()
    });
    let mut observer = server.login("observer");
    let silent = server.login("silent");
    observer.recv_json();
    // `silent` now reads nothing, so tungstenite sends no pongs for it. The
    // observer hears of its departure.
    let left = observer.recv_json();
    assert_eq!(left["user_left"], "silent");
    // What it was sent, read as raw frames (a WebSocket would try to answer
    // the pings, on a socket the server has already closed): pings, then a
    // close frame saying why.
    let mut frames = FrameSocket::new(silent.ws.into_inner());
    let mut pings = 0;
    let close_code = loop {
        let frame = frames
            .read(None)
            .expect("frames before the close")
            .expect("a frame");
        match frame.header().opcode {
            OpCode::Control(Control::Ping) => pings += 1,
            OpCode::Control(Control::Close) => {
                let payload = frame.payload();
                break u16::from_be_bytes([payload[0], payload[1]]);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pings >= 1, "no ping was sent before dropping");
    assert_eq!(CloseCode::from(close_code), CloseCode::Away);
}

#[test]
fn a_client_that_answers_pings_outlives_the_idle_timeout() {
    let server = TestServer::with(Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        ..Config::ephemeral()
    });
    let mut walter = server.login("walter");
    // Reading answers pings (tungstenite queues the pong and sends it on the
    // next read). Five pings span more than four idle timeouts.
    let mut pings = 0;
    while pings < 5 {
        match walter.ws.read().expect("still connected") {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    walter.chat("still here");
    assert_eq!(walter.recv_json()["text"], "still here");
}
