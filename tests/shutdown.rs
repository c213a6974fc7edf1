//! Graceful shutdown: a close frame (1001, going away) to everyone, threads
//! joined, and for the binary, exit status 0 on SIGINT and SIGTERM. The
//! in-process rules are checked over ws and over wss (native TLS).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::tls::Over;
use common::{Client, TestServer, WAIT};
use tungstenite::protocol::frame::coding::CloseCode;

#[test]
fn shutdown_sends_going_away_to_every_client_and_ends_every_connection() {
    going_away_to_every_client(Over::Plain);
}

#[test]
fn shutdown_sends_going_away_to_every_client_and_ends_every_connection_over_tls() {
    going_away_to_every_client(Over::Tls);
}

fn going_away_to_every_client(over: Over) {
    let server = TestServer::over(over, threadchat::Config::ephemeral());
    let mut walter = server.login("walter");
    let mut lurker = server.connect();
    assert!(server.shutdown(), "connections outlived the grace period");
    for client in [&mut walter, &mut lurker] {
        let close = client.expect_close().expect("a close code");
        assert_eq!(close.code, CloseCode::Away);
    }
}

#[test]
fn shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    no_wait_for_a_client_that_stopped_reading(Over::Plain);
}

#[test]
fn shutdown_does_not_wait_for_a_client_that_stopped_reading_over_tls() {
    no_wait_for_a_client_that_stopped_reading(Over::Tls);
}

fn no_wait_for_a_client_that_stopped_reading(over: Over) {
    let server = TestServer::over(
        over,
        threadchat::Config {
            rate_limit: 0,
            outbound_bytes: 1 << 30,
            outbound_messages: 1 << 20,
            ..threadchat::Config::ephemeral()
        },
    );
    let mut sleeper = server.login("sleeper");
    let mut talker = server.login("talker");
    sleeper.recv_json();
    // Fill the sleeper's socket buffers until its writer is blocked.
    let text = "s".repeat(1900);
    for _ in 0..6000 {
        talker.chat(&text);
        talker.recv_json();
    }
    assert!(server.shutdown(), "a blocked writer held up shutdown");
}

fn sends_close_and_exits_zero_on(signal: i32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_threadchat"))
        .args(["--host", "127.0.0.1", "--port", "0", "--db", ":memory:"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server binary");
    let pid = child.id() as i32;
    // The start-up line says where the server listens.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("a start-up line").unwrap();
        if let Some(rest) = line.split("ws://").nth(1) {
            break rest.trim_end_matches('/').to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let mut walter = Client::connect(addr.parse().unwrap());
    walter.login("walter");

    // SAFETY: kill(2) on the PID of the child this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let close = walter.expect_close().expect("a close code");
    assert_eq!(close.code, CloseCode::Away);

    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("server did not exit after signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn the_binary_closes_clients_and_exits_zero_on_sigterm() {
    sends_close_and_exits_zero_on(libc::SIGTERM);
}

#[test]
fn the_binary_closes_clients_and_exits_zero_on_sigint() {
    sends_close_and_exits_zero_on(libc::SIGINT);
}
