//! `/metrics`, `/healthz`, `/readyz` and `/api/stats` over real sockets.
//!
//! The exposition is parsed by an independent implementation, the
//! Prometheus project's Python client (`tests/prometheus/parse.py`, installed
//! into a venv under `target/` by `tests/prometheus/setup.sh` on first use),
//! so a format mistake cannot hide behind the crate that wrote it.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestServer, WAIT, eventually, raw_http};
use serde_json::{Value, json};
use threadchat::Config;
use threadchat::dispatcher::{Dispatcher, Event, Keeper};
use threadchat::metrics::{CloseReason, Metrics};
use threadchat::outbox;
use threadchat::protocol::{Login, Request};

// --- Reading the endpoints ------------------------------------------------------

/// The venv's python with prometheus_client, installed once per test run.
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let output = Command::new("bash")
            .arg(format!("{root}/tests/prometheus/setup.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/prometheus/setup.sh");
        assert!(output.status.success(), "tests/prometheus/setup.sh failed");
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
}

/// Parses an exposition with the Python parser: family name → its JSON.
fn parse_exposition(text: &str) -> Result<HashMap<String, Value>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/prometheus/parse.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).expect("the parser prints JSON"))
}

/// A parsed scrape, with lookups by sample name and labels.
struct Scrape(HashMap<String, Value>);

impl Scrape {
    fn of(server: &TestServer) -> Scrape {
        let response = get(server, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
            "{response}"
        );
        let families = parse_exposition(body(&response))
            .unwrap_or_else(|why| panic!("the exposition does not parse: {why}"));
        Scrape(families)
    }

    fn family(&self, name: &str) -> &Value {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    /// The value of the sample `sample` of family `family` whose labels
    /// include `labels`.
    fn value(&self, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
        let samples = self.family(family)["samples"].as_array().unwrap();
        samples
            .iter()
            .find(|s| s[0] == sample && labels.iter().all(|(k, v)| s[1][*k].as_str() == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {sample}{labels:?} in {family}"))[2]
            .as_f64()
            .unwrap()
    }

    /// A counter (`<name>_total`), with at most one label.
    fn counter(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let labels: Vec<(&str, &str)> = label.into_iter().collect();
        self.value(
            &format!("threadchat_{name}"),
            &format!("threadchat_{name}_total"),
            &labels,
        )
    }

    fn gauge(&self, name: &str) -> f64 {
        let name = format!("threadchat_{name}");
        self.value(&name, &name, &[])
    }

    fn histogram_count(&self, name: &str) -> f64 {
        let name = format!("threadchat_{name}");
        self.value(&name, &format!("{name}_count"), &[])
    }
}

fn get(server: &TestServer, path: &str) -> String {
    raw_http(
        server.addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn stats(server: &TestServer) -> Value {
    let response = get(server, "/api/stats");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("Content-Type: application/json"));
    assert!(response.contains("Cache-Control: no-store"));
    serde_json::from_str(body(&response)).expect("/api/stats is JSON")
}

// --- The format -----------------------------------------------------------------

#[test]
fn the_independent_parser_rejects_a_broken_exposition() {
    // Without this, a parser that accepted anything would pass every test.
    let broken = "# TYPE x counter\nx_total{a=\"1\" 2\n# EOF\n";
    assert!(parse_exposition(broken).is_err());
    let unterminated = "# TYPE x counter\nx_total 2\n";
    assert!(parse_exposition(unterminated).is_err());
}

#[test]
fn metrics_parse_and_list_every_family_and_label_from_the_start() {
    let server = TestServer::start();
    let scrape = Scrape::of(&server);
    for (family, kind) in [
        ("connections", "gauge"),
        ("users_logged_in", "gauge"),
        ("rooms", "gauge"),
        ("threads", "gauge"),
        ("dispatcher_queue_events", "gauge"),
        ("reader_threads", "gauge"),
        ("writer_threads", "gauge"),
        ("messages_received", "counter"),
        ("chats_broadcast", "counter"),
        ("frames_delivered", "counter"),
        ("socket_written_bytes", "counter"),
        ("refusals", "counter"),
        ("connections_closed", "counter"),
        ("handshakes_refused", "counter"),
        ("dispatcher_batch_events", "histogram"),
        ("chat_fanout_seconds", "histogram"),
        ("archive_commit_seconds", "histogram"),
        ("archive_commit_messages", "histogram"),
        ("archive_probes", "counter"),
    ] {
        let name = format!("threadchat_{family}");
        assert_eq!(scrape.family(&name)["type"], kind, "{name}");
    }
    for reason in [
        "client_close",
        "slow_consumer",
        "idle",
        "rate_limit",
        "size",
        "protocol_error",
        "shutdown",
        "other",
    ] {
        assert_eq!(
            scrape.counter("connections_closed", Some(("reason", reason))),
            0.0
        );
    }
    for status in ["400", "403", "404", "426", "503"] {
        assert_eq!(
            scrape.counter("handshakes_refused", Some(("status", status))),
            0.0
        );
    }
    // The process's own thread count, from /proc.
    assert!(scrape.gauge("threads") >= 3.0);
}

// --- The counters move as a session goes ---------------------------------------
// Every assertion below depends on where the counts are made:
// received/refused (reader and dispatcher), chat_broadcast, delivered and the
// fan-out clock (dispatcher flush), closed (reader guard, slow consumer via
// Outbox::is_abandoned), handshake_refused (connection, rejecter), written
// (writer), set_logged_in, batch and heartbeat (dispatcher loop).

#[test]
fn counters_follow_a_scripted_session() {
    let server = TestServer::with(Config {
        rate_limit: 0,
        outbound_bytes: 1024 * 1024,
        inside_names: true,
        ..Config::ephemeral()
    });

    // Two users; walter says three things.
    let mut walter = server.login("walter");
    let mut maria = server.login("maria");
    walter.recv_json(); // maria joined
    for text in ["one", "two", "three"] {
        walter.chat(text);
        assert_eq!(walter.recv_json()["text"], text);
        assert_eq!(maria.recv_json()["text"], text);
    }
    // A refusal from the dispatcher, one from the reader.
    let mut impostor = server.connect();
    impostor.send_json(json!({"type": "login", "username": "WALTER"}));
    assert_eq!(impostor.expect_error()["error"], "username is taken");
    impostor.send_text("{not json");
    impostor.expect_decoding_error();
    // A handshake with the wrong version.
    let refused = raw_http(
        server.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 426"));

    let first = Scrape::of(&server);
    assert_eq!(
        first.counter("messages_received", Some(("type", "login"))),
        3.0
    );
    assert_eq!(
        first.counter("messages_received", Some(("type", "chat"))),
        3.0
    );
    assert_eq!(
        first.counter("messages_received", Some(("type", "other"))),
        1.0
    );
    assert_eq!(first.counter("chats_broadcast", None), 3.0);
    // walter's login to 1, maria's to 2, three chats to 2 each.
    assert_eq!(first.counter("frames_delivered", None), 9.0);
    assert_eq!(
        first.counter("refusals", Some(("error", "username is taken"))),
        1.0
    );
    assert_eq!(
        first.counter("refusals", Some(("error", "error decoding JSON"))),
        1.0
    );
    assert_eq!(
        first.counter("handshakes_refused", Some(("status", "426"))),
        1.0
    );
    assert_eq!(first.gauge("users_logged_in"), 2.0);
    assert_eq!(first.gauge("rooms"), 1.0);
    // Three clients that keep up: frames are written in place by their
    // pusher, and a writer thread lives only for a client whose frames had
    // to wait (a dispatcher batch large enough to leave them to writers):
    // never more than one per connection.
    assert!(first.gauge("writer_threads") <= 3.0);
    assert!(first.counter("socket_written_bytes", None) > 0.0);
    assert!(first.histogram_count("dispatcher_batch_events") >= 1.0);
    // Every chat's fan-out is timed (observed just after its last push).
    assert!(eventually(WAIT, || {
        Scrape::of(&server).histogram_count("chat_fanout_seconds") == 3.0
    }));

    // A client that stops reading while another talks at full speed is
    // dropped as a slow consumer; /api/stats shows its outbox filling first.
    // (walter and maria log out first: they would stop reading too.)
    walter.send_json(json!({"type": "disconnect", "username": "walter"}));
    walter.barrier_while_logged_out();
    assert_eq!(maria.recv_json()["user_left"], "walter");
    maria.send_json(json!({"type": "disconnect", "username": "maria"}));
    maria.barrier_while_logged_out();
    let sleeper = server.login("sleeper");
    let mut talker = server.login("talker");
    let text = "z".repeat(1900);
    let mut seen_filling = false;
    let mut sleeper_dropped = false;
    for seq in 0..20_000 {
        talker.chat(&format!("{seq}:{text}"));
        loop {
            let message = talker.recv_json();
            if message["type"] == "disconnect" && message["user_left"] == "sleeper" {
                sleeper_dropped = true;
            }
            if message["type"] == "chat" && message["username"] == "talker" {
                break;
            }
        }
        if sleeper_dropped {
            break;
        }
        if seq % 25 == 0 && !seen_filling {
            seen_filling = stats(&server)["outboxes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["user"] == "sleeper" && o["bytes"].as_u64() > Some(0));
        }
    }
    assert!(sleeper_dropped, "the sleeper was never dropped");
    assert!(seen_filling, "/api/stats never showed the sleeper's outbox");

    // Counted as the sleeper's reader ends, a moment after the drop.
    assert!(eventually(WAIT, || {
        Scrape::of(&server).counter("connections_closed", Some(("reason", "slow_consumer"))) == 1.0
    }));
    // /api/stats reuses the dispatcher's view for STATS_REUSE: the one
    // taken while the sleeper's outbox filled may still be served.
    let mut snapshot = stats(&server);
    assert!(eventually(WAIT, || {
        snapshot = stats(&server);
        snapshot["drops_total"] == 1
    }));
    let drop = &snapshot["drops"][0];
    assert_eq!(drop["reason"], "slow_consumer");
    assert_eq!(drop["user"], "sleeper");
    assert_eq!(snapshot["drops_total"], 1, "{snapshot}");
    sleeper.vanish();

    // Leaving normally is a client close.
    let mut leaving = server.login("leaving");
    leaving.ws.close(None).unwrap();
    let _ = leaving.ws.read();
    assert!(eventually(WAIT, || {
        Scrape::of(&server).counter("connections_closed", Some(("reason", "client_close"))) >= 1.0
    }));
}

#[test]
fn an_idle_dispatcher_still_beats_and_is_healthy() {
    let server = TestServer::start();
    let beats = |s: &TestServer| Scrape::of(s).counter("dispatcher_heartbeats", None);
    let before = beats(&server);
    // Nothing happens; the dispatcher beats at least every 0.5 s anyway.
    assert!(
        eventually(Duration::from_secs(5), || beats(&server) >= before + 3.0),
        "the heartbeat stood still"
    );
    let health = get(&server, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert_eq!(body(&health), "ok\n");
    let ready = get(&server, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(Scrape::of(&server).gauge("dispatcher_heartbeat_age_seconds") < 2.0);
}

// --- /api/stats -----------------------------------------------------------------

#[test]
fn stats_show_ids_only_unless_names_are_allowed() {
    let server = TestServer::with(Config {
        rate_limit: 0,
        outbound_bytes: 1024 * 1024,
        ..Config::ephemeral()
    });
    let _walter = server.login("walter");
    let snapshot = stats(&server);
    assert_eq!(snapshot["names_shown"], false);
    assert_eq!(snapshot["logged_in"], 1);
    assert_eq!(snapshot["limits"]["messages"], 4096);
    assert_eq!(snapshot["limits"]["bytes"], 1024 * 1024);
    assert_eq!(snapshot["dispatcher"]["queue_capacity"], 16 * 1024);
    assert!(snapshot["threads"]["readers"].as_u64() >= Some(1));
    assert_eq!(
        snapshot["threads"]["writers"], 0,
        "walter keeps up: no writer"
    );
    assert!(!body(&get(&server, "/api/stats")).contains("walter"));
    // Rates are Δcounter / Δuptime_s: the clock moves between two snapshots.
    let later = stats(&server);
    assert!(later["uptime_s"].as_f64() > snapshot["uptime_s"].as_f64());
}

#[test]
fn no_admin_serves_none_of_it() {
    let server = TestServer::with(Config {
        no_admin: true,
        ..Config::ephemeral()
    });
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/api/stats",
        "/inside",
        "/inside.js",
    ] {
        let response = get(&server, path);
        assert!(response.starts_with("HTTP/1.1 404"), "{path}: {response}");
    }
}

#[test]
fn head_gets_the_metrics_headers_without_the_body() {
    let server = TestServer::start();
    let response = raw_http(server.addr, b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200"));
    assert_eq!(body(&response), "");
}

// --- Cost -----------------------------------------------------------------------
// Drives the dispatcher directly: Dispatcher::new, Event::Stats.

/// Building the dispatcher's part of a snapshot with 10,000 logged-in
/// clients, every outbox holding something: one pass, two atomic loads per
/// client, ten names cloned. Prints the time (see the report in the README).
#[test]
fn a_snapshot_of_10000_clients_is_cheap() {
    const CLIENTS: u64 = 10_000;
    // Outboxes need a socket; they all share one, which nothing writes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = Arc::new(threadchat::net::Stream::Plain(
        std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap(),
    ));
    let metrics = Arc::new(Metrics::new());
    let (events, receiver) = crossbeam_channel::bounded(16 * 1024);
    let dispatcher = {
        let metrics = metrics.clone();
        let config = Config {
            inside_names: true,
            history: 0,
            ..Config::ephemeral()
        };
        std::thread::spawn(move || Dispatcher::new(&config, Keeper::Nobody, metrics).run(receiver))
    };
    let mut inboxes = Vec::new();
    for id in 1..=CLIENTS {
        let (outbox, inbox) = outbox::outbox(socket.clone(), 4096, 4 * 1024 * 1024);
        inboxes.push(inbox); // kept, so that what is pushed stays queued
        for _ in 0..=id % 7 {
            outbox.push(Bytes::from_static(b"queued frame")).unwrap();
        }
        let (admitted, _) = crossbeam_channel::bounded(1);
        let room = "lobby".to_string();
        let connected = Event::Connected {
            conn: id,
            room,
            outbox,
            admitted,
        };
        events.send(connected).unwrap();
        // A few log in (10,000 logins would be a login storm, not a
        // snapshot): names are cloned only for the outboxes listed.
        if id % 500 == 0 {
            let username = format!("user{id}");
            let login = Request::Login(Login::named(username));
            events
                .send(Event::Request {
                    conn: id,
                    request: login,
                })
                .unwrap();
        }
    }
    let ask = || {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let start = Instant::now();
        events.send(Event::Stats { reply }).unwrap();
        let view = answer.recv_timeout(WAIT).expect("the dispatcher answers");
        (start.elapsed(), view)
    };
    ask(); // waits for the logins to be handled
    let mut times: Vec<Duration> = (0..21).map(|_| ask().0).collect();
    times.sort();
    let median = times[times.len() / 2];
    let (_, view) = ask();
    eprintln!(
        "snapshot of {CLIENTS} clients: median {median:?} (min {:?})",
        times[0]
    );
    assert_eq!(view.outboxes.len(), 10);
    assert!(
        view.outboxes.iter().all(|o| o.messages >= 7),
        "the fullest first"
    );
    for id in 1..=CLIENTS {
        let reason = CloseReason::ClientClose;
        events
            .send(Event::Disconnected { conn: id, reason })
            .unwrap();
    }
    drop(events);
    dispatcher.join().unwrap();
}

#[test]
fn admin_listen_moves_the_operator_endpoints_to_their_own_address() {
    let server = TestServer::with(Config {
        admin_listen: Some("127.0.0.1:0".into()),
        ..Config::ephemeral()
    });
    let admin = server.handle().admin_addr().expect("an admin address");
    assert_ne!(admin, server.addr);
    let on = |addr, path: &str| {
        raw_http(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        )
    };
    for path in ["/metrics", "/healthz", "/readyz", "/api/stats", "/inside"] {
        assert!(
            on(admin, path).starts_with("HTTP/1.1 200"),
            "{path} on the admin address"
        );
        assert!(
            on(server.addr, path).starts_with("HTTP/1.1 404"),
            "{path} on the chat port"
        );
    }
    // The admin address serves no chat and no page.
    assert!(on(admin, "/").starts_with("HTTP/1.1 404"));
    assert!(on(server.addr, "/").starts_with("HTTP/1.1 200"));
}

#[test]
fn readyz_checks_that_the_history_store_can_write() {
    let server = TestServer::start(); // history on, in memory
    let response = raw_http(server.addr, b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(body(&response).trim() == "ok", "{response}");
}

#[test]
fn readyz_probes_the_store_at_most_once_a_second_however_many_ask() {
    let server = TestServer::start(); // history on, in memory, no chats
    let started = Instant::now();
    let askers: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let ready = raw_http(addr, b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
                    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
                }
            })
        })
        .collect();
    for asker in askers {
        asker.join().unwrap();
    }
    // Two hundred asked; one probe per second begun, at most.
    let seconds = started.elapsed().as_secs_f64().ceil();
    let probes = Scrape::of(&server).counter("archive_probes", None);
    assert!(
        (1.0..=seconds + 1.0).contains(&probes),
        "{probes} probes for 200 requests in {seconds} s"
    );
}

#[test]
fn healthz_says_503_while_the_server_shuts_down() {
    let server = TestServer::with(Config {
        admin_listen: Some("127.0.0.1:0".into()),
        rate_limit: 0,
        outbound_bytes: 1 << 30,
        outbound_messages: 1 << 20,
        ..Config::ephemeral()
    });
    let admin = server.handle().admin_addr().unwrap();
    let healthz = || raw_http(admin, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(healthz().starts_with("HTTP/1.1 200"));
    // A client that stopped reading, its socket buffers full, keeps the
    // shutdown in its grace period (its writer is blocked; see
    // tests/shutdown.rs), and so the admin address open meanwhile.
    let mut sleeper = common::Client::connect(server.addr);
    sleeper.login("sleeper");
    let mut talker = common::Client::connect(server.addr);
    talker.login("talker");
    let text = "s".repeat(1900);
    for _ in 0..6000 {
        talker.chat(&text);
        talker.recv_until(|m| m["type"] == "chat");
    }
    let stopping = std::thread::spawn(move || server.shutdown());
    let mut seen = String::new();
    let flipped = eventually(WAIT, || {
        seen = healthz();
        seen.starts_with("HTTP/1.1 503")
    });
    assert!(flipped, "/healthz during shutdown: {seen}");
    assert!(
        seen.contains("shutting down") || seen.contains("stopping"),
        "{seen}"
    );
    stopping.join().unwrap();
}
