//! `--allowed-origin` keeps other sites' pages out of the chat.

mod common;

use common::TestServer;
use threadchat::Config;
use tungstenite::client::IntoClientRequest;

fn handshake_status(server: &TestServer, origin: Option<&str>) -> u16 {
    let mut request = server.url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tungstenite::connect(request) {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[test]
fn by_default_any_origin_may_connect() {
    let server = TestServer::start();
    assert_eq!(handshake_status(&server, Some("null")), 101); // a file:// page
    assert_eq!(
        handshake_status(&server, Some("http://anywhere.example")),
        101
    );
}

#[test]
fn with_allowed_origins_others_get_403() {
    let server = TestServer::with(Config {
        allowed_origins: vec!["http://chat.example".into(), "https://chat.example/".into()],
        ..Config::ephemeral()
    });
    assert_eq!(handshake_status(&server, Some("http://chat.example")), 101);
    assert_eq!(handshake_status(&server, Some("https://chat.example")), 101);
    assert_eq!(handshake_status(&server, Some("http://evil.example")), 403);
    assert_eq!(handshake_status(&server, Some("null")), 403);
    // Non-browser clients send no Origin; they could forge one anyway.
    assert_eq!(handshake_status(&server, None), 101);
}
