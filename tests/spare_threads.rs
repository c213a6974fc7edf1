//! A connection's thread, its connection over, waits a while as a spare
//! for the next accepted socket (`server/spares.rs`): the next connection
//! runs on it, whole, the caps are kept as before, and the spares are few
//! and end. The tests count this process's threads by name, so they run
//! one at a time.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Client, TestServer, WAIT, eventually, raw_http};
use threadchat::Config;
use threadchat::config::{MAX_SPARE_THREADS, SPARE_WAIT};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's threads by id, with the name the kernel shows.
fn threads() -> BTreeMap<u32, String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?;
            let id = task.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some((id, name.trim_end().to_string()))
        })
        .collect()
}

/// The ids of the threads named exactly `name`.
fn named(name: &str) -> Vec<u32> {
    threads()
        .into_iter()
        .filter(|(_, n)| n == name)
        .map(|(id, _)| id)
        .collect()
}

fn spares() -> usize {
    named("spare").len()
}

#[test]
fn the_thread_of_a_finished_request_serves_the_next_connection_whole() {
    let _alone = alone();
    let server = TestServer::with(Config {
        rate_limit: 0,
        ..Config::ephemeral()
    });
    assert_eq!(spares(), 0, "no connection yet, no spare");
    assert_eq!(server.get("/healthz"), (200, "ok\n".to_string()));
    assert!(eventually(WAIT, || spares() == 1), "{:?}", threads());
    let spare = named("spare")[0];

    // The next connection, a whole chat, runs on that thread.
    let mut walter = server.login("walter");
    assert_eq!(threads().get(&spare).map(String::as_str), Some("reader-2"));
    assert_eq!(spares(), 0);
    let mut maria = server.login("maria");
    walter.chat("hello from a second-hand thread");
    assert_eq!(
        maria.recv_until(|m| m["type"] == "chat")["text"],
        "hello from a second-hand thread"
    );

    // Its connection over, it waits again; and the page after it is whole.
    walter.ws.close(None).unwrap();
    walter.expect_close();
    assert!(eventually(WAIT, || named("spare").contains(&spare)));
    let page = raw_http(server.addr, b"GET /index.css HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
}

#[test]
fn a_spare_holds_no_place_under_the_caps_and_the_caps_still_hold() {
    let _alone = alone();
    let server = TestServer::with(Config {
        max_connections: 2,
        max_connections_per_ip: 0,
        ..Config::ephemeral()
    });
    for _ in 0..3 {
        assert_eq!(server.get("/healthz").0, 200);
    }
    // Spares wait, and hold no place: none is counted.
    let counted = || server.handle().connections();
    assert!(
        eventually(WAIT, || spares() >= 1 && counted() == 0),
        "{} spares, {} connections counted",
        spares(),
        counted()
    );

    let first = server.connect();
    let _second = server.connect();
    let refused = raw_http(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");

    // A freed place is usable again, by a connection on a spare.
    drop(first);
    assert!(eventually(WAIT, || server.handle().connections() == 1));
    assert!(eventually(WAIT, || spares() >= 1));
    let mut laura = server.login("laura");
    laura.chat("in");
    assert_eq!(laura.recv_until(|m| m["type"] == "chat")["text"], "in");
}

#[test]
fn the_limit_per_address_holds_on_spare_threads() {
    let _alone = alone();
    let server = TestServer::with(Config {
        max_connections_per_ip: 1,
        ..Config::ephemeral()
    });
    assert_eq!(server.get("/healthz").0, 200);
    assert!(eventually(WAIT, || spares() >= 1));
    let _held = server.connect();
    let refused = raw_http(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
}

#[test]
fn at_most_max_spare_threads_wait_and_they_end_after_spare_wait() {
    let _alone = alone();
    let server = TestServer::with(Config {
        max_connections_per_ip: 0,
        ..Config::ephemeral()
    });
    // More connections at once than may wait afterwards, each on a thread.
    let many = MAX_SPARE_THREADS + 8;
    let clients: Vec<Client> = (0..many).map(|_| server.connect()).collect();
    assert!(eventually(WAIT, || server.handle().connections() == many));
    assert_eq!(spares(), 0);
    drop(clients);
    // As their readers finish, the spares fill up to the bound, never past.
    let mut most = 0;
    let filled = eventually(WAIT, || {
        let now = spares();
        most = most.max(now);
        now == MAX_SPARE_THREADS && server.handle().connections() == 0
    });
    assert!(filled, "{} spares, {most} at most", spares());
    for _ in 0..10 {
        most = most.max(spares());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(most, MAX_SPARE_THREADS, "never more than the bound wait");
    // Nobody comes: each ends after SPARE_WAIT.
    assert!(
        eventually(SPARE_WAIT + WAIT, || spares() == 0),
        "{} spares still wait",
        spares()
    );
}
