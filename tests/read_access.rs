//! Read access follows sign-in, over real sockets and real HTTP: with
//! sign-in on, nobody reads the rooms or their history without a valid
//! token; a token's `rooms` claim opens only those rooms, for the chat and
//! for reading; and chats that went only to mutual followers stay out of
//! history, even from a server restarted without `--mutual-follows`.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{BinaryServer, Client, TestServer, raw_http, texts};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use threadchat::Config;
use threadchat::auth::{Secret, mint};
use threadchat::config::MAX_LOGIN_FAILURES;
use tungstenite::protocol::frame::coding::CloseCode;

const SECRET: &str = "read-access-test-secret-of-at-least-32-bytes";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token from the server's own minting, for every room.
fn token_for(user: &str) -> String {
    mint(
        SECRET.as_bytes(),
        user,
        Duration::from_secs(600),
        None,
        None,
        None,
    )
    .unwrap()
}

/// Any claims, signed with HS256 and `secret`.
fn signed(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn signed_config() -> Config {
    Config {
        jwt_secret: Some(SECRET.parse::<Secret>().unwrap()),
        ..Config::ephemeral()
    }
}

/// An HTTP answer: status, head (status line and headers) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {} {}", self.status, self.body))
    }

    /// The texts of a messages page.
    fn texts(&self) -> Vec<String> {
        texts(&self.json())
    }

    /// The room names of `/api/rooms`.
    fn rooms(&self) -> Vec<String> {
        let mut names: Vec<String> = self.json()["rooms"]
            .as_array()
            .unwrap_or_else(|| panic!("no rooms in {}", self.body))
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

/// `GET path`, with `Authorization: <authorization>` if given.
fn get(server: std::net::SocketAddr, path: &str, authorization: Option<&str>) -> Answer {
    let header = authorization.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{header}\r\n");
    let response = raw_http(server, request.as_bytes());
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Answer {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Signs in with `token` (and `since`, if given) on a fresh socket to
/// `path`; returns the history (if one came) and the first other reply.
fn sign_in(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    since: Option<u64>,
) -> (Client, Option<Value>, Value) {
    let mut client = Client::connect_to(addr, path);
    let mut login = json!({"type": "login", "token": token});
    if let Some(since) = since {
        login["since"] = json!(since);
    }
    client.send_json(login);
    let mut reply = client.recv_json();
    let mut history = None;
    if reply["type"] == "history" {
        history = Some(reply);
        reply = client.recv_json();
    }
    (client, history, reply)
}

/// Sends a chat and waits for its echo (so it is stored); returns its id.
fn say(client: &mut Client, text: &str) -> u64 {
    client.chat(text);
    let echo = client.recv_until(|m| m["type"] == "chat" && m["text"] == text);
    echo["id"].as_u64().expect("a stored chat has an id")
}

#[test]
fn with_sign_in_on_the_rooms_and_their_history_need_a_valid_bearer_token() {
    let server = TestServer::with(signed_config());
    let addr = server.addr;
    let (mut walter, _, joined) = sign_in(addr, "/r/algebra", &token_for("walter"), None);
    assert_eq!(joined["user_joined"], "walter", "{joined}");
    say(&mut walter, "homework is page 12");
    let messages = "/api/rooms/algebra/messages";

    // No token: 401, a Bearer challenge, and nothing of the room.
    for path in ["/api/rooms", messages] {
        let answer = get(addr, path, None);
        assert_eq!(answer.status, 401, "{path}: {}", answer.body);
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"threadchat\"")
        );
        assert!(
            answer.body.contains("Authorization: Bearer"),
            "{}",
            answer.body
        );
        assert!(!answer.body.contains("homework") && !answer.body.contains("algebra"));
    }

    // Bad tokens: 401 with the check that failed, never the token itself.
    let expired = signed(SECRET, json!({"sub": "walter", "exp": now() - 120}));
    let forged = signed(
        "another-secret-that-is-also-32-bytes-long",
        json!({"sub": "walter", "exp": now() + 600}),
    );
    for (token, reason) in [
        (expired.as_str(), "token expired"),
        (forged.as_str(), "bad signature"),
        ("not-a-token", "malformed token"),
    ] {
        let answer = get(addr, messages, Some(&bearer(token)));
        assert_eq!(answer.status, 401, "{reason}: {}", answer.body);
        assert!(answer.body.contains(reason), "{reason}: {}", answer.body);
        let challenge = answer.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"threadchat\", error=\"invalid_token\"")
                && challenge.contains(reason),
            "{challenge}"
        );
        assert!(!answer.head.contains(token) && !answer.body.contains(token));
    }
    // Another scheme is no bearer token.
    let basic = get(addr, "/api/rooms", Some("Basic d2FsdGVyOnB3"));
    assert_eq!(basic.status, 401);

    // A valid token in the query string is not accepted, and says why.
    let good = token_for("maria");
    let in_url = get(addr, &format!("{messages}?access_token={good}"), None);
    assert_eq!(in_url.status, 401, "{}", in_url.body);
    assert!(in_url.body.contains("not accepted"), "{}", in_url.body);
    assert!(!in_url.body.contains(&good));

    // A valid token reads, without being signed in on any socket.
    let answer = get(addr, messages, Some(&bearer(&good)));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.texts(), ["homework is page 12"]);
    let answer = get(addr, "/api/rooms", Some(&bearer(&good)));
    assert_eq!(
        (answer.status, answer.rooms()),
        (200, vec!["algebra".into()])
    );

    // What the page needs before it has a token stays open.
    let info = get(addr, "/api/info", None);
    assert_eq!(
        (info.status, info.json()["auth"].clone()),
        (200, json!("jwt"))
    );

    // Without sign-in, nothing changes: anyone reads.
    let open = TestServer::start();
    let mut laura = open.login_in("algebra", "laura");
    say(&mut laura, "open chat");
    let answer = get(open.addr, messages, None);
    assert_eq!(
        (answer.status, answer.texts()),
        (200, vec!["open chat".into()])
    );
    assert_eq!(get(open.addr, "/api/rooms", None).status, 200);
}

#[test]
fn tokens_sent_to_the_api_never_reach_the_log() {
    let mut server = BinaryServer::start_logged(&[
        "--db",
        ":memory:",
        "--log-level",
        "trace",
        "--jwt-secret",
        SECRET,
    ]);
    let good = token_for("walter");
    let bad = signed(
        "a-wrong-secret-a-wrong-secret-a-wrong",
        json!({"sub": "walter", "exp": now() + 600}),
    );
    assert_eq!(
        get(server.addr, "/api/rooms", Some(&bearer(&good))).status,
        200
    );
    assert_eq!(
        get(server.addr, "/api/rooms", Some(&bearer(&bad))).status,
        401
    );
    let in_url = format!("/api/rooms/algebra/messages?before=9&access_token={good}");
    assert_eq!(get(server.addr, &in_url, None).status, 401);
    let log = server.stop_and_read_log();
    assert!(log.contains("/api/rooms: refused: bad signature"), "{log}");
    for credential in [good.as_str(), bad.as_str()] {
        let signature = credential.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token in the log:\n{log}");
    }
}

#[test]
fn a_rooms_claim_opens_only_its_rooms_to_sign_in_and_to_read() {
    let server = TestServer::with(signed_config());
    let addr = server.addr;
    // A teacher's token: every room.
    let teacher = token_for("tom");
    let (mut tom, _, _) = sign_in(addr, "/r/staff", &teacher, None);
    say(&mut tom, "staff only");

    // walter's token, made by the token subcommand, opens algebra only
    // (named in capitals: room names are lower-cased).
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_threadchat"))
        .args(["token", "--jwt-secret", SECRET, "--user", "walter"])
        .args(["--rooms", "Algebra"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let walter_token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let (mut walter, _, joined) = sign_in(addr, "/r/algebra", &walter_token, None);
    assert_eq!(joined["user_joined"], "walter", "{joined}");
    say(&mut walter, "algebra talk");

    // Elsewhere (the lobby is `/`) it is refused like a bad token.
    for (path, room) in [("/r/staff", "staff"), ("/", "lobby")] {
        let (_, history, reply) = sign_in(addr, path, &walter_token, None);
        assert!(history.is_none(), "no history before a sign-in");
        assert_eq!(reply["error"], "authentication failed", "{reply}");
        assert_eq!(reply["request"], "login");
        assert_eq!(
            reply["details"],
            format!("this token does not open room {room}")
        );
    }
    // Counted as a failed sign-in: enough of them close the connection.
    let mut trier = Client::connect_to(addr, "/r/staff");
    for _ in 1..MAX_LOGIN_FAILURES {
        trier.send_json(json!({"type": "login", "token": walter_token}));
        assert_eq!(trier.expect_error()["error"], "authentication failed");
    }
    trier.send_json(json!({"type": "login", "token": walter_token}));
    let close = trier.expect_close().expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);

    // Reading: only the rooms the token opens.
    let walter_reads = Some(bearer(&walter_token));
    let rooms = get(addr, "/api/rooms", walter_reads.as_deref());
    assert_eq!(rooms.rooms(), ["algebra"]);
    let all = get(addr, "/api/rooms", Some(&bearer(&teacher)));
    assert_eq!(all.rooms(), ["algebra", "staff"]);
    let staff = get(addr, "/api/rooms/staff/messages", walter_reads.as_deref());
    assert_eq!(staff.status, 403, "{}", staff.body);
    assert!(staff.body.contains("this token does not open room staff"));
    assert!(!staff.body.contains("staff only"));
    let challenge = staff.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    let algebra = get(addr, "/api/rooms/algebra/messages", walter_reads.as_deref());
    assert_eq!(algebra.texts(), ["algebra talk"]);

    // The subcommand checks room names as the server does.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_threadchat"))
        .args(["token", "--jwt-secret", SECRET, "--user", "walter"])
        .args(["--rooms", "algebra,no room"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("rooms \"no room\""));
}

#[test]
fn chats_sent_under_mutual_follows_stay_out_of_history_after_a_restart_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let db = db.to_str().unwrap();
    let private = ["only for mutual followers", "a reply just as private"];

    // A server with --mutual-follows: two mutual followers chat.
    let mut mutual = BinaryServer::start(&["--db", db, "--jwt-secret", SECRET, "--mutual-follows"]);
    let follows = |user: &str, other: &str| {
        mint(
            SECRET.as_bytes(),
            user,
            Duration::from_secs(600),
            Some(vec![other.to_string()]),
            None,
            None,
        )
        .unwrap()
    };
    let (mut walter, _, _) = sign_in(mutual.addr, "/r/algebra", &follows("walter", "maria"), None);
    let (mut maria, _, _) = sign_in(mutual.addr, "/r/algebra", &follows("maria", "walter"), None);
    let first = say(&mut walter, private[0]);
    maria.recv_until(|m| m["type"] == "chat" && m["text"] == private[0]);
    say(&mut maria, private[1]);
    mutual.stop_and_read_log();

    // The same file, without --mutual-follows.
    let server = BinaryServer::start(&["--db", db, "--jwt-secret", SECRET]);
    let addr = server.addr;
    let (mut walter, history, _) = sign_in(addr, "/r/algebra", &token_for("walter"), None);
    let history = history.expect("a first login gets the room's history");
    assert_eq!(texts(&history), Vec::<String>::new(), "{history}");
    let public = say(&mut walter, "said to the whole room");
    assert!(public > first + 1, "ids go on after the private chats");

    // A newcomer's history, a reconnect's `since`, and the messages API
    // hold the chat to the room, and not one of the private ones.
    let (_, history, _) = sign_in(addr, "/r/algebra", &token_for("laura"), None);
    assert_eq!(texts(&history.unwrap()), ["said to the whole room"]);
    for (i, since) in [0, first, public - 1].into_iter().enumerate() {
        let name = format!("lena{i}");
        let (_, history, _) = sign_in(addr, "/r/algebra", &token_for(&name), Some(since));
        let history = history.expect("a history for since");
        assert_eq!(texts(&history), ["said to the whole room"], "since {since}");
    }
    let page = get(
        addr,
        "/api/rooms/algebra/messages",
        Some(&bearer(&token_for("laura"))),
    );
    assert_eq!(page.texts(), ["said to the whole room"]);
    let before = format!("/api/rooms/algebra/messages?before={public}");
    let page = get(addr, &before, Some(&bearer(&token_for("laura"))));
    assert_eq!(page.texts(), Vec::<String>::new());
}
