//! Hundreds of blocking clients at once, each on its own thread, through
//! connect, login, chat and an abrupt or clean close; afterwards nobody is
//! left online and the server still answers.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{TestServer, eventually, online_besides_probe};
use serde_json::json;
use threadchat::Config;

const CLIENTS: usize = 300;
const CHATS_EACH: usize = 5;

#[test]
fn hundreds_of_clients_come_and_go_and_the_user_list_ends_empty() {
    // One address for all: the per-address limit is another test's subject.
    let server = TestServer::with(Config {
        max_connections_per_ip: 0,
        ..Config::ephemeral()
    });
    let addr = server.addr;
    // All clients log in before any leaves, so the departures overlap with
    // logins and chats of others.
    let all_logged_in = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let all_logged_in = all_logged_in.clone();
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut client = common::Client::connect(addr);
                    client.login(&format!("user{i}"));
                    all_logged_in.wait();
                    for n in 0..CHATS_EACH {
                        client.chat(&format!("{i}:{n}"));
                    }
                    match i % 3 {
                        0 => client.vanish(),
                        1 => {
                            client.send_json(json!({"type": "disconnect", "username": "x"}));
                            client.ws.close(None).unwrap();
                        }
                        _ => client.ws.close(None).unwrap(),
                    }
                })
                .expect("spawn client thread")
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    assert!(
        eventually(Duration::from_secs(30), || server.handle().connections()
            == 0),
        "{} connections still open",
        server.handle().connections()
    );
    assert!(online_besides_probe(&server, "probe").is_empty());
}
