//! The binary's command line: `--help`, and where the port comes from.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_threadchat");

#[test]
fn help_documents_every_flag() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--log-level",
        "--max-message-bytes",
        "--max-chat-chars",
        "--rate-limit",
        "--outbound-messages",
        "--outbound-bytes",
        "--handshake-timeout",
        "--ping-interval",
        "--idle-timeout",
        "--write-timeout",
        "--max-connections",
        "--allowed-origin",
        "--broadcast-batch-bytes",
        "--write-batch",
        "--max-rooms",
        "--history",
        "--history-max",
        "--retain",
        "--db",
        "--fsync",
        "--jwt-secret",
        "--jwt-secret-file",
        "--jwt-public-key",
        "--jwt-issuer",
        "--jwt-audience",
        "--jwt-leeway",
        "--jwt-max-lifetime",
        "--mutual-follows",
        "--inside-names",
        "--no-admin",
        "--admin-listen",
        "--conformance-echo",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

/// Starts the binary with `env`, reads its start-up line, and stops it.
fn startup_line(args: &[&str], env: &[(&str, String)]) -> String {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--db", ":memory:"])
        .env_remove("PORT")
        .env_remove("WS_PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find(|line| line.contains("ws://"))
        .expect("a start-up line with the WebSocket URL");
    child.kill().unwrap();
    child.wait().unwrap();
    line
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_startup_line_names_the_page_and_the_websocket_urls() {
    let port = free_port();
    let line = startup_line(&["--port", &port.to_string()], &[]);
    assert!(
        line.contains(&format!("http://127.0.0.1:{port}/")),
        "{line}"
    );
    assert!(line.contains(&format!("ws://127.0.0.1:{port}/")), "{line}");
}

#[test]
fn the_port_comes_from_port_then_ws_port() {
    let (a, b) = (free_port(), free_port());
    let line = startup_line(&[], &[("PORT", a.to_string()), ("WS_PORT", b.to_string())]);
    assert!(line.contains(&format!(":{a}/")), "{line}");
    let line = startup_line(&[], &[("WS_PORT", b.to_string())]);
    assert!(line.contains(&format!(":{b}/")), "{line}");
    let c = free_port();
    let line = startup_line(&["--port", &c.to_string()], &[("PORT", a.to_string())]);
    assert!(line.contains(&format!(":{c}/")), "{line}");
}

#[test]
fn the_connection_cap_is_lowered_to_what_the_open_file_limit_allows() {
    // 200 descriptors, 128 kept in reserve: room for 72 connections.
    let mut child = Command::new("bash")
        .args([
            "-c",
            "ulimit -n 200 && exec \"$0\" \"$@\"",
            BIN,
            "--port",
            "0",
            "--db",
            ":memory:",
        ])
        .env_remove("PORT")
        .env_remove("WS_PORT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut warned = false;
    let addr = loop {
        let line = lines.next().expect("start-up lines").unwrap();
        warned |= line.contains("serving at most 72 connections");
        if let Some(rest) = line.split("ws://").nth(1) {
            break rest.trim_end_matches('/').to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    assert!(warned, "no warning about the lowered cap");
    let url = format!("ws://{addr}/");
    let clients: Vec<_> = (0..72)
        .map(|_| tungstenite::connect(&url).expect("within the cap"))
        .collect();
    match tungstenite::connect(&url) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503 above the cap, got {:?}", other.map(|_| ())),
    }
    drop(clients);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs the binary, which is expected to refuse to start: its exit code and
/// everything it printed. One that starts instead is killed after ten
/// seconds and the test fails.
fn refused_start(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(BIN);
    command
        .args(["--port", "0", "--db", ":memory:"])
        .args(args)
        .env_remove("PORT")
        .env_remove("WS_PORT")
        .env_remove("THREADCHAT_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("threadchat {args:?} started instead of refusing to");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}

#[test]
fn the_conformance_echo_is_refused_with_sign_in() {
    let secret = "a-secret-for-this-test-only-0123456789";
    let by_flag = refused_start(
        &["--conformance-echo", "/echo", "--jwt-secret", secret],
        &[],
    );
    let by_env = refused_start(
        &["--conformance-echo", "/echo"],
        &[("THREADCHAT_JWT_SECRET", secret)],
    );
    for (code, printed) in [by_flag, by_env] {
        assert_eq!(code, Some(1), "{printed}");
        assert!(
            printed.contains("--conformance-echo is for testing") && printed.contains("sign-in"),
            "{printed}"
        );
    }
}

#[test]
fn a_conformance_echo_path_is_a_path_and_not_a_room_s() {
    for bad in ["echo", "/", "/r/echo", "/r", "/echo?x", "/ech o"] {
        let (code, printed) = refused_start(&["--conformance-echo", bad], &[]);
        assert_eq!(code, Some(2), "{bad:?} accepted: {printed}");
        assert!(printed.contains("--conformance-echo"), "{printed}");
    }
}
