//! Native TLS (`--tls-cert`, `--tls-key`): the page over https and the chat
//! over wss on the one port, with certificates made by each test (a CA and
//! a leaf, with Debian's `openssl`), never committed keys.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::tls::{self, Over, Pki, TlsSocket};
use common::{TestServer, WAIT, eventually};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use threadchat::Config;
use threadchat::metrics::TlsFailure;

/// A leaf for localhost that expired in 2020, as `<name>.pem` and
/// `<name>.key` (`openssl ca` can back-date; `x509 -days` cannot).
fn expired_leaf(pki: &Pki, name: &str) -> (PathBuf, PathBuf) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    pki.key_and_request(&key, &csr);
    let config = "[ca]\ndefault_ca=t\n[t]\ndatabase=index.txt\nnew_certs_dir=.\n\
                  serial=serial\npolicy=any\ndefault_md=sha256\n[any]\ncommonName=supplied\n";
    std::fs::write(pki.path("ca.cnf"), config).unwrap();
    std::fs::write(pki.path("index.txt"), "").unwrap();
    std::fs::write(pki.path("serial"), "01\n").unwrap();
    pki.openssl(&[
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-keyfile",
        "ca.key",
        "-cert",
        "ca.pem",
        "-in",
        &csr,
        "-out",
        &pem,
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
        "-notext",
    ]);
    (pki.path(&pem), pki.path(&key))
}

fn tls_config(cert: &Path, key: &Path) -> Config {
    tls::server_config(cert, key, Config::ephemeral())
}

/// The certificate the server presented.
fn presented(stream: &TlsSocket) -> Vec<u8> {
    stream.conn.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_der(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn wss_login_chat_and_disconnect_work_over_tls() {
    let server = TestServer::over(Over::Tls, Config::ephemeral());
    let mut ada = server.login_in("lab", "ada");
    let mut bob = server.login_in("lab", "bob");
    assert_eq!(
        ada.recv_until(|m| m["type"] == "login")["user_joined"],
        "bob"
    );
    bob.chat("hello over wss");
    let chat = ada.recv_until(|m| m["type"] == "chat");
    assert_eq!(
        (chat["username"].as_str(), chat["text"].as_str()),
        (Some("bob"), Some("hello over wss"))
    );
    bob.send_json(json!({"type": "disconnect"}));
    assert_eq!(
        ada.recv_until(|m| m["type"] == "disconnect")["user_left"],
        "bob"
    );
}

#[test]
fn a_client_that_does_not_trust_the_certificate_cannot_connect() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let server = TestServer::with(tls_config(&cert, &key));
    let stranger = Pki::new(); // another CA: the server's is not trusted
    let result = tls::connect(server.addr, stranger.client_config());
    let Err(error) = result else {
        panic!("the handshake must fail");
    };
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    let metrics = server.handle().metrics().clone();
    assert!(eventually(WAIT, || metrics
        .tls_handshakes_failed_total(TlsFailure::ClientAlert)
        == 1));
}

#[test]
fn https_get_serves_the_page() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let server = TestServer::with(tls_config(&cert, &key));
    let answer = tls::https(
        server.addr,
        pki.client_config(),
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("<html") || answer.contains("<!DOCTYPE"),
        "{answer}"
    );
}

#[test]
fn a_stalled_tls_handshake_is_closed_at_the_deadline() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let server = TestServer::with(Config {
        handshake_timeout: Duration::from_millis(800),
        ..tls_config(&cert, &key)
    });
    let mut socket = TcpStream::connect(server.addr).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    // The first bytes of a ClientHello record, then nothing.
    socket.write_all(&[22, 3, 1, 0, 200, 1]).unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 64];
    let ended = loop {
        match socket.read(&mut sink) {
            Ok(0) | Err(_) => break started.elapsed(),
            Ok(_) => continue,
        }
    };
    assert!(ended < Duration::from_secs(5), "held for {ended:?}");
    let metrics = server.handle().metrics().clone();
    assert!(eventually(WAIT, || metrics
        .tls_handshakes_failed_total(TlsFailure::Timeout)
        == 1));
    assert!(eventually(WAIT, || server.handle().connections() == 0));
}

#[test]
fn plain_http_on_the_tls_port_is_dropped_and_counted() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let server = TestServer::with(tls_config(&cert, &key));
    let answer = common::raw_http(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!answer.contains("200 OK"), "{answer}");
    let metrics = server.handle().metrics().clone();
    assert!(eventually(WAIT, || metrics
        .tls_handshakes_failed_total(TlsFailure::NotTls)
        == 1));
}

/// The start-up error for a configuration, as the operator reads it.
fn start_error(config: Config) -> String {
    match threadchat::Server::bind(config) {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_certificate_file_stops_the_start_naming_it() {
    let pki = Pki::new();
    let (_, key) = pki.leaf("server", 30);
    let missing = pki.path("nowhere.pem");
    let error = start_error(tls_config(&missing, &key));
    assert!(
        error.contains("nowhere.pem") && error.contains("cannot read"),
        "{error}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_start() {
    let pki = Pki::new();
    let (cert, _) = pki.leaf("server", 30);
    let (_, other_key) = pki.leaf("other", 30);
    let error = start_error(tls_config(&cert, &other_key));
    assert!(
        error.contains("other.key") && error.contains("does not match"),
        "{error}"
    );
}

#[test]
fn an_expired_certificate_stops_the_start() {
    let pki = Pki::new();
    let (cert, key) = expired_leaf(&pki, "old");
    let error = start_error(tls_config(&cert, &key));
    assert!(
        error.contains("old.pem") && error.contains("expired"),
        "{error}"
    );
}

#[test]
fn a_key_without_a_certificate_stops_the_start() {
    let pki = Pki::new();
    let (_, key) = pki.leaf("server", 30);
    let config = Config {
        tls_key: Some(key),
        ..Config::ephemeral()
    };
    let error = start_error(config);
    assert!(error.contains("--tls-key needs --tls-cert"), "{error}");
}

#[test]
fn a_reload_serves_new_handshakes_the_new_certificate_and_keeps_open_connections() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let first = leaf_der(&cert);
    let server = TestServer::with(tls_config(&cert, &key));
    let trusting = pki.client_config();
    let mut ada = common::Client::connect_over(server.addr, "/r/lab", Some(&trusting));
    ada.login("ada");
    // certbot renews in place: the same paths, a new pair.
    let (renewed, renewed_key) = pki.leaf("renewed", 30);
    std::fs::copy(&renewed, &cert).unwrap();
    std::fs::copy(&renewed_key, &key).unwrap();
    server.handle().reload_tls();
    let stream = tls::connect(server.addr, pki.client_config()).unwrap();
    assert_eq!(presented(&stream), leaf_der(&renewed));
    assert_ne!(presented(&stream), first);
    let mut bob = common::Client::connect_over(server.addr, "/r/lab", Some(&trusting));
    bob.login("bob");
    ada.chat("still here");
    assert_eq!(
        bob.recv_until(|m| m["type"] == "chat")["text"],
        "still here"
    );
}

#[test]
fn a_bad_reload_keeps_the_old_pair() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let server = TestServer::with(tls_config(&cert, &key));
    let before = leaf_der(&cert);
    let (_, other_key) = pki.leaf("other", 30);
    std::fs::copy(&other_key, &key).unwrap(); // a key that does not match
    server.handle().reload_tls();
    let stream = tls::connect(server.addr, pki.client_config()).unwrap();
    assert_eq!(presented(&stream), before);
}

#[test]
fn readyz_says_so_within_a_week_of_the_certificates_expiry() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 3);
    let server = TestServer::with(tls_config(&cert, &key));
    let answer = tls::https(
        server.addr,
        pki.client_config(),
        "GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("certificate expires in"), "{answer}");
    let (fresh, fresh_key) = pki.leaf("fresh", 30);
    let fresh_server = TestServer::with(tls_config(&fresh, &fresh_key));
    let answer = tls::https(
        fresh_server.addr,
        pki.client_config(),
        "GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn metrics_show_when_the_certificate_expires() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let server = TestServer::with(tls_config(&cert, &key));
    let answer = tls::https(
        server.addr,
        pki.client_config(),
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let line = answer
        .lines()
        .find(|l| l.starts_with("threadchat_tls_certificate_expiry_seconds "))
        .unwrap_or_else(|| panic!("no expiry in {answer}"));
    let expires: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let days = (expires - now.as_secs_f64()) / 86_400.0;
    assert!((29.0..=30.5).contains(&days), "{days} days");
}

#[test]
fn hsts_is_sent_over_https_only_when_asked() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let get = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let plain = TestServer::with(tls_config(&cert, &key));
    assert!(
        !tls::https(plain.addr, pki.client_config(), get).contains("Strict-Transport-Security")
    );
    let strict = TestServer::with(Config {
        hsts: true,
        ..tls_config(&cert, &key)
    });
    let answer = tls::https(strict.addr, pki.client_config(), get);
    assert!(
        answer.contains("Strict-Transport-Security: max-age=31536000"),
        "{answer}"
    );
}

#[test]
fn sighup_makes_the_binary_reload_its_certificate() {
    use std::io::{BufRead, BufReader};
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", 30);
    let mut child = Command::new(env!("CARGO_BIN_EXE_threadchat"))
        .args(["--host", "127.0.0.1", "--port", "0", "--db", ":memory:"])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the server binary");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("a start-up line").unwrap();
        if let Some(rest) = line.split("wss://").nth(1) {
            break rest.trim_end_matches('/').parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let (renewed, renewed_key) = pki.leaf("renewed", 30);
    std::fs::copy(&renewed, &cert).unwrap();
    std::fs::copy(&renewed_key, &key).unwrap();
    let pid = child.id() as i32;
    // SAFETY: kill(2) on the PID of the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let reloaded = eventually(WAIT, || {
        tls::connect(addr, pki.client_config())
            .is_ok_and(|stream| presented(&stream) == leaf_der(&renewed))
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
    assert!(reloaded, "new handshakes never saw the renewed certificate");
}

/// The answer an over-cap TLS client gets: a GET over https, read to its
/// end, from a real rustls client.
fn refused_over_tls(server: &TestServer) -> String {
    let client = server.client_tls().unwrap().clone();
    tls::https(
        server.addr,
        client,
        "GET /r/lab HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
}

#[test]
fn over_the_per_address_cap_a_tls_client_is_answered_429_over_tls() {
    let server = TestServer::over(
        Over::Tls,
        Config {
            max_connections_per_ip: 1,
            ..Config::ephemeral()
        },
    );
    let _held = tls::connect(server.addr, server.client_tls().unwrap().clone()).unwrap();
    let answer = refused_over_tls(&server);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
}

#[test]
fn over_the_connection_cap_a_tls_client_is_answered_503_over_tls() {
    let server = TestServer::over(
        Over::Tls,
        Config {
            max_connections: 1,
            max_connections_per_ip: 0,
            ..Config::ephemeral()
        },
    );
    let _held = tls::connect(server.addr, server.client_tls().unwrap().clone()).unwrap();
    let answer = refused_over_tls(&server);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

#[test]
fn a_stalled_tls_handshake_holds_the_rejecter_only_until_its_deadline() {
    let server = TestServer::over(
        Over::Tls,
        Config {
            max_connections_per_ip: 1,
            ..Config::ephemeral()
        },
    );
    let _held = tls::connect(server.addr, server.client_tls().unwrap().clone()).unwrap();
    // Over the cap too, and stalled inside its ClientHello.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(&[22, 3, 1, 0, 200, 1]).unwrap();
    let started = Instant::now();
    let answer = refused_over_tls(&server);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited < threadchat::config::REJECT_TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(2),
        "the next refusal waited {waited:?}"
    );
    let metrics = server.handle().metrics().clone();
    assert!(eventually(WAIT, || metrics
        .tls_handshakes_failed_total(TlsFailure::Timeout)
        == 1));
}
