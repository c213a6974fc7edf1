//! The way frames reach a socket: written in place while the client keeps
//! up, through a writer thread started for a backlog while it does not
//! (`outbox/turn.rs`, `connection/writer.rs`), one writer at a time.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use common::{Client, TestServer, WAIT, eventually, thread_count};
use serde_json::Value;
use threadchat::Config;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// The tests here count this process's threads: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's threads whose name starts with `prefix` (the server runs
/// in-process, and names its threads `reader-<conn>`, `writer-<conn>`).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

fn chat_text(message: &Value) -> Option<String> {
    (message["type"] == "chat").then(|| message["text"].as_str().unwrap().to_string())
}

#[test]
fn concurrent_broadcasts_reach_every_reader_in_one_order() {
    let _alone = alone();
    let server = TestServer::with(Config {
        rate_limit: 0,
        history: 0,
        ..Config::ephemeral()
    });
    const SENDERS: usize = 4;
    const CHATS: usize = 300;
    const READERS: usize = 6;
    let mut readers: Vec<Client> = (0..READERS)
        .map(|i| server.login(&format!("reader{i}")))
        .collect();
    let senders: Vec<Client> = (0..SENDERS)
        .map(|i| server.login(&format!("sender{i}")))
        .collect();
    let talking: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut sender)| {
            std::thread::spawn(move || {
                for n in 0..CHATS {
                    sender.chat(&format!("{s}:{n}"));
                }
                // Reads its own echoes (and everything else) to the end.
                let mut seen = 0;
                while seen < SENDERS * CHATS {
                    if chat_text(&sender.recv_json()).is_some() {
                        seen += 1;
                    }
                }
            })
        })
        .collect();
    let mut orders = Vec::new();
    for reader in &mut readers {
        let mut order = Vec::with_capacity(SENDERS * CHATS);
        while order.len() < SENDERS * CHATS {
            if let Some(text) = chat_text(&reader.recv_json()) {
                order.push(text);
            }
        }
        orders.push(order);
    }
    for thread in talking {
        thread.join().unwrap();
    }
    // Each sender's chats in the order sent, and one order for all.
    let mut next: HashMap<String, usize> = HashMap::new();
    for text in &orders[0] {
        let (sender, n) = text.split_once(':').unwrap();
        let expected = next.entry(sender.to_string()).or_default();
        assert_eq!(
            n.parse::<usize>().unwrap(),
            *expected,
            "{sender} out of order"
        );
        *expected += 1;
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "two readers saw different orders");
    }
}

#[test]
fn a_client_that_stops_reading_then_resumes_gets_everything_in_order() {
    let _alone = alone();
    let server = TestServer::with(Config {
        rate_limit: 0,
        history: 0,
        outbound_bytes: 64 * 1024 * 1024,
        outbound_messages: 1 << 20,
        ..Config::ephemeral()
    });
    let mut pauser = server.login("pauser");
    let mut talker = server.login("talker");
    assert_eq!(pauser.recv_json()["user_joined"], "talker");
    // Whatever writer the logins needed has lingered and gone.
    assert!(eventually(WAIT, || threads_named("writer-") == 0));
    // The pauser reads nothing while the talker sends 5.7 MB: more than
    // the kernel holds for one loopback connection (the pauser's receive
    // buffer does not grow while it does not read; the server's send
    // buffer grows to 4 MiB at most), so its socket blocks midway, the
    // rest waits in its outbox, and a writer thread holds its turn.
    let text = "p".repeat(1900);
    let mut sent = 0;
    while sent < 3000 {
        talker.chat(&format!("{sent}:{text}"));
        talker.recv_json();
        sent += 1;
    }
    assert!(
        threads_named("writer-") >= 1,
        "no writer for a socket that cannot take what was sent"
    );
    for expected in 0..sent {
        let text = chat_text(&pauser.recv_json()).expect("only chats");
        let n: usize = text.split_once(':').unwrap().0.parse().unwrap();
        assert_eq!(n, expected);
    }
    // Caught up: the writer lingers a moment, then goes; the connection
    // stays, one thread again, and direct writes carry on.
    assert!(
        eventually(WAIT, || threads_named("writer-") == 0),
        "the writer outlived the backlog"
    );
    talker.chat("after");
    assert_eq!(
        chat_text(&pauser.recv_until(|m| m["type"] == "chat")).unwrap(),
        "after"
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_its_socket_closed_and_the_others_untouched() {
    let _alone = alone();
    let server = TestServer::with(Config {
        rate_limit: 0,
        history: 0,
        outbound_bytes: 256 * 1024,
        ..Config::ephemeral()
    });
    let sleeper = server.login("sleeper");
    let mut talker = server.login("talker");
    let mut listener = server.login("listener");
    talker.recv_json();
    let text = "q".repeat(1900);
    // The talker sends, one chat at a time, until the listener hears that
    // the sleeper left; the listener gets every chat, in order.
    let mut sent = 0;
    let mut heard = 0;
    let left = loop {
        talker.chat(&format!("{sent}:{text}"));
        sent += 1;
        let message = listener.recv_json();
        if message["type"] == "disconnect" {
            assert_eq!(message["user_left"], "sleeper");
            break Instant::now();
        }
        let text = chat_text(&message).expect("a chat");
        assert_eq!(text.split_once(':').unwrap().0, heard.to_string());
        heard += 1;
        assert!(sent < 100_000, "the sleeper was never dropped");
    };
    // Its socket is closed within half a second of the drop: what was in
    // the socket's buffers can still be read, then it ends.
    let mut socket = sleeper.ws.into_inner();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    let ended = socket.read_to_end(&mut sink);
    assert!(
        !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the sleeper's socket stayed open"
    );
    assert!(
        left.elapsed() < Duration::from_millis(500),
        "the socket closed {:?} after the drop",
        left.elapsed()
    );
    talker.chat("still here");
    let heard = listener.recv_until(|m| m["type"] == "chat" && m["text"] == "still here");
    assert_eq!(heard["username"], "talker");
}

#[test]
fn shutdown_sends_1001_to_every_socket_idle_logged_in_or_behind() {
    let _alone = alone();
    let server = TestServer::with(Config {
        rate_limit: 0,
        history: 0,
        ..Config::ephemeral()
    });
    let mut clients: Vec<Client> = (0..5).map(|_| server.connect()).collect();
    for i in 0..5 {
        clients.push(server.login(&format!("user{i}")));
    }
    // One of them behind: chats it has not read wait for it.
    let mut talker = server.login("talker");
    for n in 0..50 {
        talker.chat(&format!("{n}"));
    }
    clients.push(talker);
    assert!(server.shutdown(), "connections outlived the grace period");
    for client in &mut clients {
        let close = client.expect_close().expect("a close code");
        assert_eq!(close.code, CloseCode::Away);
    }
}

#[test]
fn nothing_is_written_after_a_close_frame() {
    let _alone = alone();
    let server = TestServer::with(Config {
        rate_limit: 0,
        history: 0,
        ..Config::ephemeral()
    });
    let listener = server.login("listener");
    let mut talker = server.login("talker");
    // The talker chats without pause while the server shuts down, so
    // broadcasts race the close frame to the listener's socket.
    let talking = std::thread::spawn(move || {
        for n in 0..100_000 {
            let sent = talker.ws.send(Message::text(format!(
                r#"{{"type":"chat","text":"{n}","username":"x"}}"#
            )));
            if sent.is_err() || talker.ws.flush().is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.shutdown());
    talking.join().unwrap();
    // The listener's raw bytes: frames, the close frame last, then the end.
    let mut socket = listener.ws.into_inner();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut bytes = Vec::new();
    socket
        .read_to_end(&mut bytes)
        .expect("the server closes the socket");
    let mut at = 0;
    let mut close_at = None;
    while at < bytes.len() {
        let (opcode, header, length) = frame_at(&bytes[at..]).expect("whole frames only");
        if opcode == 0x8 {
            close_at = Some(at);
        }
        at += header + length;
    }
    let close_at = close_at.expect("a close frame");
    let (_, header, length) = frame_at(&bytes[close_at..]).unwrap();
    assert_eq!(
        close_at + header + length,
        bytes.len(),
        "bytes after the close frame"
    );
    let code = u16::from_be_bytes([bytes[close_at + header], bytes[close_at + header + 1]]);
    assert_eq!(code, 1001);
}

/// A server frame's opcode, header length and payload length (unmasked).
fn frame_at(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let opcode = bytes.first()? & 0x0f;
    let (header, length) = match bytes.get(1)? & 0x7f {
        126 => (
            4,
            u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    (bytes.len() >= header + length).then_some((opcode, header, length))
}

#[test]
fn an_idle_connection_costs_one_thread() {
    let _alone = alone();
    let server = TestServer::with(Config {
        rate_limit: 0,
        history: 0,
        ..Config::ephemeral()
    });
    let mut walter = server.login("walter");
    let _maria = server.login("maria");
    walter.recv_json();
    // Whatever writer the logins needed has lingered and gone.
    assert!(eventually(WAIT, || threads_named("writer-") == 0));
    let before = thread_count();
    let idle: Vec<Client> = (0..20).map(|_| server.connect()).collect();
    let grown = thread_count() - before;
    assert_eq!(grown, 20, "{grown} threads for 20 idle connections");
    // A chat to a client that reads is written in place: no writer.
    walter.chat("hello");
    walter.recv_until(|m| m["type"] == "chat");
    assert_eq!(threads_named("writer-"), 0);
    drop(idle);
}
