//! Every client sees the same messages in the same order, with several
//! senders at once: nothing lost, nothing duplicated.

mod common;

use std::thread;

use common::TestServer;
use serde_json::json;
use threadchat::Config;

const SENDERS: usize = 4;
const LISTENERS: usize = 4;
const MESSAGES_EACH: usize = 200;

#[test]
fn concurrent_senders_are_seen_in_one_order_by_everyone_without_loss_or_duplicates() {
    let server = TestServer::with(Config {
        rate_limit: 0,
        ..Config::ephemeral()
    });
    let total = SENDERS * MESSAGES_EACH;
    let mut everyone = Vec::new();
    for i in 0..SENDERS + LISTENERS {
        everyone.push(server.login(&format!("user{i}")));
    }
    // Skip the login broadcasts each client got after its own.
    let n = everyone.len();
    for (i, client) in everyone.iter_mut().enumerate() {
        for _ in i + 1..n {
            assert_eq!(client.recv_json()["type"], "login");
        }
    }
    let mut readers = Vec::new();
    for (i, mut client) in everyone.into_iter().enumerate() {
        readers.push(thread::spawn(move || {
            let sender = (i < SENDERS).then(|| {
                let mut writer_side = client.ws.get_ref().try_clone().unwrap();
                thread::spawn(move || {
                    use tungstenite::protocol::{Role, WebSocket};
                    // A second handle on the socket only for writing frames;
                    // the test reads on the original.
                    let mut out = WebSocket::from_raw_socket(&mut writer_side, Role::Client, None);
                    for seq in 0..MESSAGES_EACH {
                        let msg = json!({"type": "chat", "text": format!("{i}:{seq}")});
                        out.send(tungstenite::Message::text(msg.to_string()))
                            .unwrap();
                    }
                    std::mem::forget(out); // do not send a close frame
                })
            });
            let mut seen = Vec::with_capacity(total);
            while seen.len() < total {
                let message = client.recv_json();
                assert_eq!(message["type"], "chat", "{message}");
                seen.push(message["text"].as_str().unwrap().to_string());
            }
            if let Some(sender) = sender {
                sender.join().unwrap();
            }
            seen
        }));
    }
    let sequences: Vec<Vec<String>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    for other in &sequences[1..] {
        assert_eq!(other, &sequences[0], "two clients saw different orders");
    }
    // Each sender's messages arrive complete, once each and in its order.
    for sender in 0..SENDERS {
        let prefix = format!("{sender}:");
        let from_sender: Vec<&String> = sequences[0]
            .iter()
            .filter(|t| t.starts_with(&prefix))
            .collect();
        let expected: Vec<String> = (0..MESSAGES_EACH)
            .map(|s| format!("{sender}:{s}"))
            .collect();
        assert_eq!(from_sender.len(), MESSAGES_EACH);
        assert!(from_sender.iter().zip(&expected).all(|(a, b)| *a == b));
    }
}
