//! Above `--max-connections` the server says 503, and nobody inside notices.

mod common;

use std::time::Duration;

use common::{TestServer, eventually, raw_http};
use threadchat::Config;

#[test]
fn above_the_cap_new_connections_get_503_and_existing_users_are_unaffected() {
    let server = TestServer::with(Config {
        max_connections: 3,
        ..Config::ephemeral()
    });
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    let _lurker = server.connect();
    walter.recv_json();

    let response = raw_http(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    let upgrade = tungstenite::connect(server.url());
    match upgrade {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }

    walter.chat("still fine");
    assert_eq!(maria.recv_json()["text"], "still fine");

    // A freed place is usable again.
    drop(_lurker);
    assert!(eventually(Duration::from_secs(10), || server
        .handle()
        .connections()
        == 2));
    server.login("laura");
}
