//! A client that stops reading is dropped; nobody else waits for it or loses
//! anything. Each rule is checked over ws and over wss (native TLS), where
//! the writer encrypts for each client and a full socket looks the same.

mod common;

use std::time::Duration;

use common::tls::Over;
use common::{TestServer, eventually};
use threadchat::Config;
use tungstenite::Message;

/// Resident memory of this process (server and clients both live here).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_others_lose_nothing() {
    never_reading_client_is_dropped(Over::Plain);
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_others_lose_nothing_over_tls() {
    never_reading_client_is_dropped(Over::Tls);
}

fn never_reading_client_is_dropped(over: Over) {
    let server = TestServer::over(
        over,
        Config {
            rate_limit: 0,
            outbound_bytes: 256 * 1024,
            ..Config::ephemeral()
        },
    );
    let mut sleeper = server.login("sleeper");
    let mut talker = server.login("talker");
    let mut listener = server.login("listener");
    sleeper.recv_json();
    sleeper.recv_json();
    talker.recv_json();
    // The sleeper reads nothing from here on.

    let memory_before = rss_bytes();
    let text = "z".repeat(1900);
    let count = 8_000; // about 16 MB per reader: far more than socket buffers hold
    let talker_thread = std::thread::spawn(move || {
        for seq in 0..count {
            talker.chat(&format!("{seq}:{text}"));
            // Drain our own echo as we go, so the talker is a fast reader.
            let echo = talker.recv_until(|m| m["type"] == "chat");
            assert!(
                echo["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{seq}:"))
            );
        }
        talker
    });
    let mut sleeper_left = false;
    let mut next = 0;
    while next < count {
        let message = listener.recv_json();
        match message["type"].as_str() {
            Some("chat") => {
                let seq: usize = message["text"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(seq, next, "lost or reordered a message");
                next += 1;
            }
            Some("disconnect") => {
                assert_eq!(message["user_left"], "sleeper");
                sleeper_left = true;
            }
            _ => panic!("unexpected {message}"),
        }
    }
    // Kept connected: the count below expects talker and listener.
    let _talker = talker_thread.join().unwrap();
    assert!(sleeper_left, "the slow client was never dropped");
    let growth = rss_bytes().saturating_sub(memory_before);
    assert!(growth < 64 * 1024 * 1024, "memory grew by {growth} bytes");

    // The sleeper, reading at last, finds whatever the kernel buffered and
    // then the end of the connection, not an endless queue.
    sleeper
        .ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut frames = 0;
    loop {
        match sleeper.ws.read() {
            Ok(Message::Text(_)) => frames += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(
        frames < count,
        "the slow client got everything: it was not dropped"
    );
    assert!(eventually(Duration::from_secs(10), || server
        .handle()
        .connections()
        == 2));
}

#[test]
fn a_writer_blocked_longer_than_the_write_timeout_drops_its_client() {
    blocked_writer_is_dropped(Over::Plain);
}

#[test]
fn a_writer_blocked_longer_than_the_write_timeout_drops_its_client_over_tls() {
    blocked_writer_is_dropped(Over::Tls);
}

fn blocked_writer_is_dropped(over: Over) {
    // A queue bound large enough never to fill: only the write timeout can
    // end this client.
    let server = TestServer::over(
        over,
        Config {
            rate_limit: 0,
            outbound_bytes: 1 << 30,
            outbound_messages: 1 << 20,
            write_timeout: Duration::from_millis(300),
            ..Config::ephemeral()
        },
    );
    let mut sleeper = server.login("sleeper");
    let mut talker = server.login("talker");
    sleeper.recv_json();
    let text = "w".repeat(1900);
    let mut sent = 0;
    loop {
        talker.chat(&text);
        sent += 1;
        let message = talker.recv_until(|m| m["type"] != "chat" || m["username"] == "talker");
        if message["type"] == "disconnect" {
            assert_eq!(message["user_left"], "sleeper");
            break;
        }
        assert!(sent < 200_000, "the blocked client was never dropped");
    }
}
