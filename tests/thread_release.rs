//! Threads and file descriptors are released on every exit path. Alone in
//! its file, so that it is alone in its process and the counts are ours.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{TestServer, eventually, raw_http, thread_count};
use threadchat::Config;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn after_1000_connect_close_cycles_threads_and_fds_are_back_at_baseline() {
    let server = TestServer::with(Config {
        rate_limit: 0,
        handshake_timeout: Duration::from_millis(500),
        ..Config::ephemeral()
    });
    // Warm up once so that lazily started threads (none expected) exist.
    server.login("warmup").vanish();
    assert!(eventually(Duration::from_secs(10), || server
        .handle()
        .connections()
        == 0));
    let threads_before = thread_count();
    let fds_before = open_fds();

    for i in 0..1000 {
        match i % 5 {
            // Logged in, then a clean close.
            0 => {
                let mut c = server.login(&format!("u{i}"));
                c.ws.close(None).unwrap();
                c.expect_close();
            }
            // Logged in, then vanished.
            1 => server.login(&format!("u{i}")).vanish(),
            // Never logged in.
            2 => drop(server.connect()),
            // Plain HTTP.
            3 => {
                raw_http(server.addr, b"GET /index.css HTTP/1.1\r\n\r\n");
            }
            // Half a request, then gone.
            _ => {
                let mut s = TcpStream::connect(server.addr).unwrap();
                s.write_all(b"GET / HT").unwrap();
            }
        }
    }
    assert!(
        eventually(Duration::from_secs(20), || server.handle().connections()
            == 0),
        "{} connections still open",
        server.handle().connections()
    );
    assert!(
        eventually(Duration::from_secs(10), || thread_count() <= threads_before),
        "threads: {threads_before} before, {} after",
        thread_count()
    );
    assert!(
        eventually(Duration::from_secs(10), || open_fds() <= fds_before),
        "fds: {fds_before} before, {} after",
        open_fds()
    );
}
