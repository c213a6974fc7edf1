//! One client cannot exhaust the server: not by opening connections from
//! one address, not by hiding behind a proxy or forging one, not by holding
//! sockets without logging in, not by opening rooms without a token, and
//! not by asking for a large answer and never reading it.
//!
//! Several tests connect from 127.0.0.2: on Linux every 127.x.y.z address is
//! this machine's loopback, so a socket bound to it is a second client
//! address without a second machine.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::tls::Transport;
use common::{BinaryServer, Client, TestServer, WAIT, eventually, raw_http};
use serde_json::{Value, json};
use socket2::{Domain, Socket, Type};
use threadchat::Config;
use threadchat::auth::{Secret, mint};
use threadchat::metrics::HandshakeStatus;
use threadchat::protocol::CloseReason;
use tungstenite::WebSocket;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;

/// A second client address on this machine (see the module comment).
const OTHER: &str = "127.0.0.2";

const SECRET: &str = "a class secret that is long enough for HS256!";

/// A WebSocket handshake request, written by hand.
const UPGRADE: &[u8] = b"GET /r/lobby HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A TCP connection to `server` from the local address `from`.
fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let local = SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0);
    socket.bind(&local.into()).expect("bind a loopback address");
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// A WebSocket handshake to `/r/lobby` from `from`, with extra headers: the
/// open socket, or the status it was refused with.
fn open_from(
    from: &str,
    server: SocketAddr,
    headers: &[(&'static str, &str)],
) -> Result<WebSocket<Transport>, u16> {
    let stream = Transport::Plain(connect_from(from, server));
    let mut request = format!("ws://{server}/r/lobby")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    match tungstenite::client::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// `GET path` from `from`: the whole response.
fn get_from(from: &str, server: SocketAddr, path: &str) -> String {
    let mut stream = connect_from(from, server);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn signed(config: Config) -> Config {
    Config {
        jwt_secret: Some(SECRET.parse::<Secret>().unwrap()),
        ..config
    }
}

fn token(user: &str) -> String {
    mint(
        SECRET.as_bytes(),
        user,
        Duration::from_secs(600),
        None,
        None,
        None,
    )
    .unwrap()
}

/// Signs `client` in as `user`: the first reply that is not history.
fn sign_in(client: &mut Client, user: &str) -> Value {
    client.send_json(json!({"type": "login", "token": token(user)}));
    client.recv_until(|m| m["type"] != "history")
}

#[test]
fn past_the_limit_per_address_a_connection_gets_429_and_is_counted() {
    let server = TestServer::with(Config {
        max_connections_per_ip: 3,
        ..Config::ephemeral()
    });
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    let lurker = server.connect();
    walter.recv_json();

    let response = raw_http(server.addr, UPGRADE);
    assert!(response.starts_with("HTTP/1.1 429 "), "{response}");
    assert!(
        response.contains("too many connections from your address (at most 3"),
        "{response}"
    );
    match tungstenite::connect(server.url()) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| ())),
    }
    // Another address is not limited by this one's connections.
    let metrics = get_from(OTHER, server.addr, "/metrics");
    assert!(
        metrics.contains("threadchat_handshakes_refused_total{status=\"429\"} 2"),
        "{metrics}"
    );

    walter.chat("still fine");
    assert_eq!(maria.recv_json()["text"], "still fine");
    // A freed place is usable again.
    drop(lurker);
    assert!(eventually(WAIT, || server.handle().connections() == 2));
    server.login("laura");
}

#[test]
fn sockets_that_never_send_a_request_count_toward_the_limit_per_address() {
    let mut server = BinaryServer::start_logged(&[
        "--db",
        ":memory:",
        "--max-connections-per-ip",
        "3",
        "--max-connections",
        "6",
    ]);
    // Slowloris: three sockets that say nothing at all.
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| connect_from("127.0.0.1", server.addr))
        .collect();
    let response = raw_http(server.addr, UPGRADE);
    assert!(response.starts_with("HTTP/1.1 429 "), "{response}");
    // The server has places left, and another address gets them.
    let ws = open_from(OTHER, server.addr, &[]).expect("a place for another address");
    Client { ws }.login("walter");
    drop(silent);
    let log = server.stop_and_read_log();
    assert!(
        log.contains("connection from 127.0.0.1 refused: 3 open from that address"),
        "{log}"
    );
}

#[test]
fn a_trusted_proxy_s_clients_are_limited_each_under_its_own_address() {
    let mut server = BinaryServer::start_logged(&[
        "--db",
        ":memory:",
        "--max-connections-per-ip",
        "2",
        "--trusted-proxy",
        "::1/128",
        "--trusted-proxy",
        "127.0.0.1/32",
    ]);
    let proxy = "127.0.0.1";
    let first = ("X-Forwarded-For", "198.51.100.1");
    let _a = open_from(proxy, server.addr, &[first]).expect("the first client's first");
    let _b = open_from(proxy, server.addr, &[first]).expect("the first client's second");
    // What the client wrote itself is on the left, and ignored.
    let forged = ("X-Forwarded-For", "203.0.113.9, 198.51.100.1");
    assert_eq!(open_from(proxy, server.addr, &[forged]).err(), Some(429));
    assert_eq!(open_from(proxy, server.addr, &[first]).err(), Some(429));
    // Other clients of the same proxy have places of their own, and the
    // proxy's own address is not limited: it has four connections now.
    let second = ("X-Forwarded-For", "198.51.100.2");
    let ws = open_from(proxy, server.addr, &[second]).expect("the second client");
    // A login answered: the connection's log line is written by then.
    Client { ws }.login("maria");
    let third = ("Forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=http");
    let ws = open_from(proxy, server.addr, &[third]).expect("the third client");
    Client { ws }.login("laura");
    let log = server.stop_and_read_log();
    assert!(log.contains("WebSocket open from 198.51.100.2"), "{log}");
    assert!(
        log.contains("WebSocket open from 2001:db8:cafe::17"),
        "{log}"
    );
    assert!(
        log.contains("from 198.51.100.1 (via 127.0.0.1) refused"),
        "{log}"
    );
}

#[test]
fn an_untrusted_peer_s_forwarding_headers_are_ignored() {
    let server = TestServer::with(Config {
        max_connections_per_ip: 2,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::ephemeral()
    });
    // 127.0.0.2 is no proxy: whatever it claims, it is one address.
    let claims: [(&'static str, &str); 3] = [
        ("X-Forwarded-For", "198.51.100.3"),
        ("Forwarded", "for=198.51.100.4"),
        ("X-Forwarded-For", "198.51.100.5"),
    ];
    let _a = open_from(OTHER, server.addr, &[claims[0]]).expect("a first connection");
    let _b = open_from(OTHER, server.addr, &[claims[1]]).expect("a second connection");
    assert_eq!(open_from(OTHER, server.addr, &[claims[2]]).err(), Some(429));
    let refused = server
        .handle()
        .metrics()
        .handshakes_refused_total(HandshakeStatus::TooManyRequests);
    assert_eq!(refused, 1);
}

#[test]
fn a_socket_not_logged_in_within_the_login_timeout_is_closed_with_1008() {
    let server = TestServer::with(Config {
        login_timeout: Duration::from_millis(500),
        ..Config::ephemeral()
    });
    let opened = Instant::now();
    let _walter = server.login("walter");
    let mut silent = server.connect();
    // Sending a login is not being logged in: this one is refused.
    let mut refused = server.connect();
    refused.send_json(json!({"type": "login", "username": "walter"}));
    assert_eq!(refused.expect_error()["error"], "username is taken");
    for client in [&mut silent, &mut refused] {
        let frame = client.expect_close().expect("a close frame");
        assert_eq!(frame.code, CloseCode::Policy);
        assert_eq!(frame.reason, "login timeout");
    }
    assert!(opened.elapsed() >= Duration::from_millis(500));
    let metrics = server.handle().metrics().clone();
    assert!(eventually(WAIT, || metrics
        .closed_total(CloseReason::LoginTimeout)
        == 2));
    let scrape = server.get("/metrics").1;
    assert!(
        scrape.contains("threadchat_connections_closed_total{reason=\"login_timeout\"} 2"),
        "{scrape}"
    );
}

#[test]
fn a_logged_in_client_is_not_closed_by_the_login_timeout() {
    let login_timeout = Duration::from_millis(500);
    for config in [Config::ephemeral(), signed(Config::ephemeral())] {
        let signing = config.jwt_secret.is_some();
        let server = TestServer::with(Config {
            login_timeout,
            ..config
        });
        let mut walter = server.connect();
        if signing {
            assert_eq!(sign_in(&mut walter, "walter")["type"], "login");
        } else {
            walter.login("walter");
        }
        // Opened after walter, closed after walter's deadline has passed.
        let mut later = server.connect();
        let frame = later.expect_close().expect("a close frame");
        assert_eq!(frame.reason, "login timeout");
        walter.chat("still here");
        let echo = walter.recv_until(|m| m["type"] == "chat");
        assert_eq!(echo["text"], "still here", "signed: {signing}");
    }
}

#[test]
fn with_sign_in_on_sockets_without_a_token_hold_no_room() {
    let server = TestServer::with(signed(Config {
        max_rooms: 2,
        ..Config::ephemeral()
    }));
    // Without sign-in the third of these would be refused (503).
    let anonymous: Vec<Client> = (1..=5)
        .map(|i| Client::connect_to(server.addr, &format!("/r/a{i}")))
        .collect();
    assert_eq!(server.handle().metrics().rooms(), 0);
    let mut walter = Client::connect_to(server.addr, "/r/physics");
    let joined = sign_in(&mut walter, "walter");
    assert_eq!(joined["type"], "login", "{joined}");
    assert_eq!(joined["room"], "physics");
    assert_eq!(server.handle().metrics().rooms(), 1);
    drop(anonymous);
}

#[test]
fn with_sign_in_on_the_login_that_would_open_a_room_too_many_is_refused() {
    let server = TestServer::with(signed(Config {
        max_rooms: 1,
        ..Config::ephemeral()
    }));
    let mut walter = Client::connect_to(server.addr, "/r/physics");
    assert_eq!(sign_in(&mut walter, "walter")["type"], "login");
    let mut maria = Client::connect_to(server.addr, "/r/chemistry");
    let refused = sign_in(&mut maria, "maria");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["error"], "too many rooms");
    assert_eq!(refused["request"], "login");
    // An existing room takes more users.
    let mut laura = Client::connect_to(server.addr, "/r/physics");
    assert_eq!(sign_in(&mut laura, "laura")["type"], "login");
    // Once physics is gone, chemistry fits: maria's socket is still open.
    drop(walter);
    drop(laura);
    let metrics = server.handle().metrics().clone();
    assert!(eventually(WAIT, || metrics.rooms() == 0));
    let joined = sign_in(&mut maria, "maria");
    assert_eq!(joined["type"], "login", "{joined}");
    assert_eq!(joined["room"], "chemistry");
}

#[test]
fn an_http_answer_the_client_never_reads_frees_its_thread() {
    let server = TestServer::with(Config {
        write_timeout: Duration::from_millis(500),
        max_chat_chars: 100_000,
        max_message_bytes: 256 * 1024,
        rate_limit: 0,
        ..Config::ephemeral()
    });
    // A page of history far larger than any socket buffer: 10 MB.
    let text = "x".repeat(100_000);
    let mut walter = server.login_in("big", "walter");
    for _ in 0..100 {
        walter.chat(&text);
        walter.recv_until(|m| m["type"] == "chat");
    }
    drop(walter);
    let handle = server.handle();
    assert!(eventually(WAIT, || handle.connections() == 0));

    // Asks, and never reads: a receive buffer as small as it gets.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stalled: TcpStream = socket.into();
    stalled
        .write_all(b"GET /api/rooms/big/messages?limit=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(eventually(WAIT, || handle.connections() == 1));
    let started = Instant::now();
    assert!(
        eventually(WAIT, || handle.connections() == 0),
        "the answer's thread is still writing"
    );
    assert!(eventually(WAIT, || handle.metrics().readers() == 0));
    assert!(started.elapsed() < Duration::from_secs(5));
    // It was the page that was being written.
    let mut start = [0u8; 12];
    stalled.read_exact(&mut start).unwrap();
    assert_eq!(&start, b"HTTP/1.1 200");
}
