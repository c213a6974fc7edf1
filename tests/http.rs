//! The page is served on the chat's own port.

mod common;

use common::{TestServer, raw_http};

fn get(server: &TestServer, path: &str) -> String {
    raw_http(
        server.addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

#[test]
fn get_root_serves_the_chat_page_as_html() {
    let server = TestServer::start();
    let response = get(&server, "/");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(
        header(&response, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(body(&response), include_str!("../client/index.html"));
    let length: usize = header(&response, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body(&response).len());
}

#[test]
fn the_script_and_the_stylesheet_are_served_with_their_content_types() {
    let server = TestServer::start();
    let js = get(&server, "/client.js");
    assert!(js.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(
        header(&js, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(body(&js), include_str!("../client/client.js"));
    let css = get(&server, "/index.css?v=2");
    assert!(css.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(
        header(&css, "content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(body(&css), include_str!("../client/index.css"));
}

#[test]
fn pages_forbid_foreign_scripts() {
    let server = TestServer::start();
    let response = get(&server, "/");
    let csp = header(&response, "content-security-policy").expect("a CSP header");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
}

#[test]
fn other_paths_are_404() {
    let server = TestServer::start();
    for path in ["/nope", "/client.js/", "/../Cargo.toml", "/src/main.rs"] {
        let response = get(&server, path);
        assert!(
            response.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{path}: {response}"
        );
    }
}

#[test]
fn head_gets_headers_without_a_body() {
    let server = TestServer::start();
    let response = raw_http(server.addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(body(&response), "");
}

#[test]
fn other_methods_are_405() {
    let server = TestServer::start();
    let response = raw_http(server.addr, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
}

#[test]
fn garbage_gets_400_and_the_server_keeps_serving() {
    let server = TestServer::start();
    let response = raw_http(server.addr, b"\x16\x03\x01 this is not http\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(get(&server, "/").starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn an_oversized_request_head_gets_400() {
    let server = TestServer::start();
    let request = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    let response = raw_http(server.addr, request.as_bytes());
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
}

#[test]
fn an_upgrade_with_a_wrong_version_gets_426() {
    let server = TestServer::start();
    let response = raw_http(
        server.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert_eq!(header(&response, "sec-websocket-version"), Some("13"));
}

#[test]
fn the_handshake_answers_with_the_rfc_accept_key() {
    let server = TestServer::start();
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
    // The example key and answer from RFC 6455, section 1.3.
    assert_eq!(
        header(&response, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[test]
fn no_other_site_may_frame_the_chat_page() {
    let server = TestServer::start();
    for path in ["/", "/r/algebra"] {
        let response = get(&server, path);
        let csp = header(&response, "content-security-policy").expect("a CSP header");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
}

#[test]
fn json_and_error_answers_are_not_sniffed() {
    let server = TestServer::start();
    for path in [
        "/api/rooms",
        "/api/info",
        "/nowhere",
        "/r/bad%20name",
        "/metrics",
    ] {
        let response = get(&server, path);
        assert_eq!(
            header(&response, "x-content-type-options"),
            Some("nosniff"),
            "{path}: {response}"
        );
    }
}
