//! Sign-in with tokens, over real sockets: only a valid token logs in, under
//! the name it gives, and nobody can speak as somebody else.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{BinaryServer, Client, TestServer, users};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use threadchat::Config;
use threadchat::auth::{Secret, mint};
use tungstenite::protocol::frame::coding::CloseCode;

const SECRET: &str = "a class secret that is long enough for HS256!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token built by hand: any header, any claims, signed with HMAC-SHA256
/// and `secret` (or not signed at all, for `alg: none`).
fn token(header: Value, claims: Value, secret: Option<&str>) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = match secret {
        Some(secret) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

fn hs256(claims: Value) -> String {
    token(json!({"alg": "HS256", "typ": "JWT"}), claims, Some(SECRET))
}

fn valid_for(user: &str, seconds: u64) -> String {
    hs256(json!({"sub": user, "exp": now() + seconds}))
}

fn signed_config() -> Config {
    Config {
        jwt_secret: Some(SECRET.parse::<Secret>().unwrap()),
        ..Config::ephemeral()
    }
}

fn server() -> TestServer {
    TestServer::with(signed_config())
}

/// Sends a token login; returns the first reply that is not history.
fn sign_in(client: &mut Client, token: &str) -> Value {
    client.send_json(json!({"type": "login", "token": token, "username": "mallory"}));
    client.recv_until(|m| m["type"] != "history")
}

fn expect_auth_failure(client: &mut Client, token: &str, check: &str) {
    let reply = sign_in(client, token);
    assert_eq!(reply["type"], "error", "{check}: {reply}");
    assert_eq!(reply["error"], "authentication failed", "{check}: {reply}");
    assert_eq!(reply["request"], "login");
    let details = reply["details"].as_str().unwrap().to_lowercase();
    assert!(details.contains(check), "expected {check:?} in {details:?}");
}

#[test]
fn the_name_comes_from_the_tokens_sub_only() {
    let server = server();
    let mut client = server.connect();
    let joined = sign_in(&mut client, &valid_for("walter", 600));
    assert_eq!(joined["user_joined"], "walter", "{joined}");
    client.send_json(json!({"type": "chat", "text": "hi", "username": "mallory"}));
    let echo = client.recv_until(|m| m["type"] == "chat");
    assert_eq!(echo["username"], "walter");
}

#[test]
fn a_login_without_a_token_is_refused_and_the_connection_stays_open() {
    let server = server();
    let mut client = server.connect();
    client.send_json(json!({"type": "login", "username": "walter"}));
    let reply = client.expect_error();
    assert_eq!(reply["error"], "authentication failed");
    assert_eq!(reply["request"], "login");
    // Another try with a token works on the same connection.
    assert_eq!(
        sign_in(&mut client, &valid_for("walter", 600))["type"],
        "login"
    );
}

#[test]
fn every_bad_token_is_refused_with_the_check_that_failed() {
    let server = server();
    let exp = now() + 600;
    let good = json!({"sub": "walter", "exp": exp});
    let cases = [
        ("not a token", "malformed".to_string()),
        (
            "alg none",
            token(json!({"alg": "none", "typ": "JWT"}), good.clone(), None),
        ),
        (
            "another secret",
            token(
                json!({"alg": "HS256"}),
                good.clone(),
                Some("another secret"),
            ),
        ),
        (
            "expired",
            hs256(json!({"sub": "walter", "exp": now() - 120})),
        ),
        (
            "not yet valid",
            hs256(json!({"sub": "walter", "exp": exp, "nbf": now() + 300})),
        ),
        ("no exp", hs256(json!({"sub": "walter"}))),
    ];
    for (case, bad) in cases {
        // A connection each: five failures in a row would close one.
        let mut client = server.connect();
        let reply = sign_in(&mut client, &bad);
        assert_eq!(reply["error"], "authentication failed", "{case}: {reply}");
        assert!(!reply["details"].as_str().unwrap().is_empty(), "{case}");
    }
    let mut client = server.connect();
    expect_auth_failure(
        &mut client,
        &hs256(json!({"sub": "walter", "exp": now() - 120})),
        "expired",
    );
    let mut client = server.connect();
    expect_auth_failure(
        &mut client,
        &token(json!({"alg": "none"}), good.clone(), None),
        "none",
    );
    // A payload changed after signing.
    let mut client = server.connect();
    let signed = valid_for("walter", 600);
    let parts: Vec<&str> = signed.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "exp": exp}).to_string());
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    expect_auth_failure(&mut client, &tampered, "signature");
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let server = TestServer::with(Config {
        jwt_issuer: Some("course".into()),
        jwt_audience: Some("chat".into()),
        ..signed_config()
    });
    let exp = now() + 600;
    let mut client = server.connect();
    expect_auth_failure(
        &mut client,
        &hs256(json!({"sub": "w", "exp": exp, "iss": "other", "aud": "chat"})),
        "issuer",
    );
    expect_auth_failure(
        &mut client,
        &hs256(json!({"sub": "w", "exp": exp, "iss": "course", "aud": "other"})),
        "audience",
    );
    let ok = hs256(json!({"sub": "w", "exp": exp, "iss": "course", "aud": "chat"}));
    assert_eq!(sign_in(&mut client, &ok)["user_joined"], "w");
}

#[test]
fn five_failed_sign_ins_in_a_row_close_the_connection_with_1008() {
    let server = server();
    let mut client = server.connect();
    for _ in 0..4 {
        assert_eq!(
            sign_in(&mut client, "garbage")["error"],
            "authentication failed"
        );
    }
    client.send_json(json!({"type": "login", "token": "garbage"}));
    let close = client.expect_close().expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
}

#[test]
fn an_expired_session_is_closed_with_1008_and_the_room_hears_the_departure() {
    let server = TestServer::with(Config {
        jwt_leeway: Duration::ZERO,
        ..signed_config()
    });
    let mut maria = server.connect();
    sign_in(&mut maria, &valid_for("maria", 600));
    let mut walter = server.connect();
    sign_in(&mut walter, &valid_for("walter", 2));
    maria.recv_until(|m| m["user_joined"] == "walter");
    let close = walter.expect_close().expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "token expired");
    let left = maria.recv_until(|m| m["type"] == "disconnect");
    assert_eq!(left["user_left"], "walter");
    assert_eq!(users(&left), ["maria"]);
}

#[test]
fn a_fresh_token_for_the_same_name_extends_the_session_without_a_login_broadcast() {
    let server = TestServer::with(Config {
        jwt_leeway: Duration::ZERO,
        ..signed_config()
    });
    let mut maria = server.connect();
    sign_in(&mut maria, &valid_for("maria", 600));
    let mut walter = server.connect();
    sign_in(&mut walter, &valid_for("walter", 2));
    maria.recv_until(|m| m["user_joined"] == "walter");
    walter.send_json(json!({"type": "login", "token": valid_for("walter", 600)}));
    // Past the first token's end, walter still chats; maria's next message
    // is that chat: no second login was broadcast, no departure either.
    std::thread::sleep(Duration::from_secs(3));
    walter.chat("still here");
    let next = maria.recv_json();
    assert_eq!(next["type"], "chat", "{next}");
    assert_eq!(next["text"], "still here");
}

#[test]
fn with_mutual_follows_a_chat_reaches_only_mutual_followers() {
    let server = TestServer::with(Config {
        mutual_follows: true,
        ..signed_config()
    });
    let exp = now() + 600;
    // walter and maria follow each other; laura follows walter, who does
    // not follow her.
    let claims = |sub: &str, follows: &[&str]| json!({"sub": sub, "exp": exp, "follows": follows});
    let mut walter = server.connect();
    sign_in(&mut walter, &hs256(claims("walter", &["maria"])));
    let mut maria = server.connect();
    sign_in(&mut maria, &hs256(claims("maria", &["walter"])));
    let mut laura = server.connect();
    sign_in(&mut laura, &hs256(claims("laura", &["walter", "maria"])));
    walter.recv_until(|m| m["user_joined"] == "laura");
    maria.recv_until(|m| m["user_joined"] == "laura");

    walter.chat("from walter");
    assert_eq!(walter.recv_json()["text"], "from walter");
    assert_eq!(maria.recv_json()["text"], "from walter");
    laura.chat("from laura");
    assert_eq!(laura.recv_json()["text"], "from laura");
    maria.chat("from maria");
    assert_eq!(maria.recv_json()["text"], "from maria");
    assert_eq!(walter.recv_json()["text"], "from maria");
    // laura heard neither walter nor maria, and they did not hear her:
    // each one's next message is a barrier only its mutual followers get.
    laura.chat("barrier laura");
    assert_eq!(laura.recv_json()["text"], "barrier laura");
    walter.chat("barrier walter");
    assert_eq!(walter.recv_json()["text"], "barrier walter");
    assert_eq!(maria.recv_json()["text"], "barrier walter");
    laura.chat("second barrier laura");
    assert_eq!(laura.recv_json()["text"], "second barrier laura");
}

#[test]
fn tokens_from_the_token_subcommand_are_accepted() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_threadchat"))
        .args([
            "token",
            "--jwt-secret",
            SECRET,
            "--user",
            "walter",
            "--ttl",
            "2h",
        ])
        .args(["--follows", "maria,laura"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let server = server();
    let mut client = server.connect();
    assert_eq!(sign_in(&mut client, &printed)["user_joined"], "walter");
    // The same token, checked independently of the server: HMAC-SHA256 of
    // header.payload, and the claims asked for.
    let parts: Vec<&str> = printed.split('.').collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("signed with the secret");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["sub"], "walter");
    assert_eq!(claims["follows"], json!(["maria", "laura"]));
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(now() + 7200) < 60, "{claims}");
}

#[test]
fn secrets_and_tokens_never_reach_the_log_even_at_trace() {
    let secret = "trace-secret-that-must-not-appear-anywhere-0123456789";
    let good = mint(
        secret.as_bytes(),
        "walter",
        Duration::from_secs(600),
        None,
        None,
        None,
    )
    .unwrap();
    let bad = token(
        json!({"alg": "HS256"}),
        json!({"sub": "walter", "exp": now() + 600}),
        Some("wrong secret"),
    );
    let mut server = BinaryServer::start_logged(&[
        "--db",
        ":memory:",
        "--log-level",
        "trace",
        "--jwt-secret",
        secret,
    ]);
    let mut client = Client::connect(server.addr);
    assert_eq!(sign_in(&mut client, &bad)["type"], "error");
    assert_eq!(sign_in(&mut client, &good)["user_joined"], "walter");
    client.chat("hello");
    client.recv_until(|m| m["type"] == "chat");
    let log = server.stop_and_read_log();
    assert!(
        log.contains("signed in as walter"),
        "the log was captured: {log}"
    );
    for credential in [secret, good.as_str(), bad.as_str()] {
        assert!(!log.contains(credential), "a credential in the log:\n{log}");
        // Not even the signature part alone.
        let signature = credential.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a signature in the log:\n{log}");
    }
}
