//! Limits on what signs people in, with real processes and real sockets: an
//! HS256 secret too short to be safe stops the server and the token
//! subcommand, and a token that lives longer than `--jwt-max-lifetime` is
//! refused, for the chat and for reading.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{BinaryServer, TestServer, raw_http};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use threadchat::Config;
use threadchat::auth::Secret;
use threadchat::config::MIN_JWT_SECRET_BYTES;

const BIN: &str = env!("CARGO_BIN_EXE_threadchat");
const SECRET: &str = "token-limits-test-secret-of-at-least-32-bytes";
const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The reply to a token login on a fresh socket (history skipped).
fn sign_in(server: &TestServer, token: &str) -> Value {
    let mut client = server.connect();
    client.send_json(json!({"type": "login", "token": token}));
    client.recv_until(|m| m["type"] != "history")
}

#[test]
fn an_hs256_secret_under_32_bytes_stops_the_server_and_the_token_subcommand() {
    let short = "x".repeat(MIN_JWT_SECRET_BYTES - 1);
    let rule = format!("{} bytes; HS256 needs at least 32", short.len());

    let (status, text) = BinaryServer::run_to_end(&["--db", ":memory:", "--jwt-secret", &short]);
    let status = status.expect("the server stops by itself");
    assert!(!status.success(), "{text}");
    assert!(text.contains(&rule), "{text}");
    assert!(!text.contains(&short), "the secret in the output:\n{text}");
    assert!(!text.contains("ws://"), "it must not listen:\n{text}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{short}\n")).unwrap();
    let (status, text) = BinaryServer::run_to_end(&[
        "--db",
        ":memory:",
        "--jwt-secret-file",
        file.to_str().unwrap(),
    ]);
    assert!(!status.expect("it stops").success(), "{text}");
    assert!(text.contains(&rule) && !text.contains(&short), "{text}");

    let token = |secret: &str| {
        Command::new(BIN)
            .args(["token", "--jwt-secret", secret, "--user", "walter"])
            .output()
            .unwrap()
    };
    let refused = token(&short);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&rule) && !stderr.contains(&short),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());
    // 32 bytes are enough.
    let long_enough = "x".repeat(MIN_JWT_SECRET_BYTES);
    assert!(token(&long_enough).status.success());
}

#[test]
fn a_token_that_lives_longer_than_the_maximum_is_refused() {
    let server = TestServer::with(Config {
        jwt_secret: Some(SECRET.parse::<Secret>().unwrap()),
        jwt_max_lifetime: Duration::from_secs(HOUR),
        ..Config::ephemeral()
    });
    let now = now();
    let refused = [
        // No iat: counted from now (the text says how long, in hours).
        (
            hs256(json!({"sub": "walter", "exp": now + 2 * HOUR + 60})),
            "token lives too long: it is valid for about 2.0 hours from now; \
             this server accepts at most 1 hour",
        ),
        // Issued two hours ago for two and a half: counted from iat.
        (
            hs256(json!({"sub": "walter", "iat": now - 2 * HOUR, "exp": now + HOUR / 2})),
            "token lives too long: it is valid for about 2.5 hours from its iat; \
             this server accepts at most 1 hour",
        ),
    ];
    for (token, details) in &refused {
        let reply = sign_in(&server, token);
        assert_eq!(reply["error"], "authentication failed", "{reply}");
        assert_eq!(reply["details"], *details);
        // Reading with it is refused for the same reason.
        let request =
            format!("GET /api/rooms HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n");
        let answer = raw_http(server.addr, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains(details), "{answer}");
    }
    let within = hs256(json!({"sub": "walter", "iat": now, "exp": now + HOUR}));
    assert_eq!(sign_in(&server, &within)["user_joined"], "walter");

    // By default, at most 30 days: what `threadchat token` makes at most.
    let server = TestServer::with(Config {
        jwt_secret: Some(SECRET.parse::<Secret>().unwrap()),
        ..Config::ephemeral()
    });
    let too_long = hs256(json!({"sub": "maria", "exp": now + 31 * DAY}));
    let reply = sign_in(&server, &too_long);
    assert!(
        reply["details"]
            .as_str()
            .unwrap()
            .ends_with("at most 30 days"),
        "{reply}"
    );
    let output = Command::new(BIN)
        .args(["token", "--jwt-secret", SECRET, "--user", "maria"])
        .args(["--ttl", "30d"])
        .output()
        .unwrap();
    let month = String::from_utf8(output.stdout).unwrap();
    assert_eq!(sign_in(&server, month.trim())["user_joined"], "maria");

    // The subcommand will not make a token its server would refuse.
    let output = Command::new(BIN)
        .args(["token", "--jwt-secret", SECRET, "--user", "maria"])
        .args(["--ttl", "2h", "--jwt-max-lifetime", "3600"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--jwt-max-lifetime"), "{stderr}");
}
