//! A quiet connection's reader waits near the top of its stack, the pages
//! below given back (`connection/idle.rs`), and the connection works as
//! before when the client speaks again.
//!
//! What the reader keeps is read from the kernel, not from the server: the
//! reader thread is found by its name, its stack pointer (where it blocks)
//! from `/proc/self/task/<tid>/syscall`, and the resident size of the
//! mapping that holds it from `/proc/self/smaps`. One test only in this
//! file: the server runs in this process, and a second test's readers
//! would be found too.

mod common;

use std::time::Duration;

use common::{TestServer, WAIT, eventually};
use threadchat::Config;
use tungstenite::Message;

/// Where the server's one reader thread is blocked: its stack pointer, and
/// the resident KiB of the stack mapping that holds it. `None` while it
/// runs, or when there is not exactly one reader.
fn reader_stack() -> Option<(usize, u64)> {
    let mut readers = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.starts_with("reader-") {
            readers.push(path);
        }
    }
    let [reader] = readers.as_slice() else {
        return None;
    };
    // "nr arg1 … arg6 sp pc" while in a system call, "running" otherwise.
    let syscall = std::fs::read_to_string(reader.join("syscall")).ok()?;
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let sp = usize::from_str_radix(fields[fields.len() - 2].trim_start_matches("0x"), 16).ok()?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((low, high)) = range.split_once('-')
            && let (Ok(low), Ok(high)) = (
                usize::from_str_radix(low, 16),
                usize::from_str_radix(high, 16),
            )
        {
            inside = (low..high).contains(&sp);
            continue;
        }
        if inside && let Some(rss) = line.strip_prefix("Rss:") {
            return Some((sp, rss.trim().trim_end_matches("kB").trim().parse().ok()?));
        }
    }
    None
}

/// The reader's resident stack once it has been blocked in the same place
/// for a moment (its stack pointer unchanged across two looks).
fn settled_reader_stack() -> u64 {
    let mut last = None;
    let mut settled = None;
    assert!(
        eventually(WAIT, || {
            let now = reader_stack();
            if now.is_some() && now == last {
                settled = now;
                return true;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(100));
            false
        }),
        "the reader never sat still"
    );
    settled.expect("settled").1
}

/// Waits until the reader has been quiet long enough to wait shallow.
fn quiet_for_a_while() {
    std::thread::sleep(threadchat::config::QUIET_AFTER + Duration::from_millis(300));
}

#[test]
fn a_quiet_reader_keeps_a_shallow_stack_and_still_answers_pings_logs_in_and_chats() {
    let server = TestServer::with(Config {
        login_timeout: Duration::ZERO,
        ..Config::ephemeral()
    });
    let mut quiet = server.connect();
    // Just opened: the reader waits in its read, below the read loop.
    let busy = settled_reader_stack();
    quiet_for_a_while();
    let shallow = settled_reader_stack();
    assert!(
        shallow < busy,
        "a quiet reader keeps less stack ({shallow} KiB) than a busy one ({busy} KiB)"
    );
    assert!(
        shallow <= 8,
        "a quiet reader keeps two pages of stack at most, not {shallow} KiB"
    );

    // Woken by a ping, it answers.
    quiet
        .ws
        .send(Message::Ping(b"still there?".to_vec().into()))
        .unwrap();
    loop {
        match quiet.ws.read().expect("a pong") {
            Message::Pong(payload) => break assert_eq!(&payload[..], b"still there?"),
            other => panic!("expected a pong, got {other:?}"),
        }
    }

    // Quiet again, then a login after the long silence, and a chat.
    quiet_for_a_while();
    assert!(settled_reader_stack() <= 8, "quiet again, shallow again");
    quiet.login("late");
    quiet.chat("after a quiet spell");
    assert_eq!(quiet.recv_json()["text"], "after a quiet spell");

    // And after another quiet spell, another chat.
    quiet_for_a_while();
    assert!(settled_reader_stack() <= 8, "quiet after chatting, shallow");
    quiet.chat("and again");
    assert_eq!(quiet.recv_json()["text"], "and again");
}
