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
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

/// Starts the binary with `env`, reads its start-up line, and stops it.
fn startup_line(args: &[&str], env: &[(&str, String)]) -> String {
    let mut command = Command::new(BIN);
    command
        .args(args)
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
