//! A quiet connection's reader waits near the top of its stack, the pages
//! below given back (`connection/idle.rs`), and the connection works as
//! before when the client speaks again.
//!
//! What the reader keeps is read from the kernel, not from the server: the
//! reader thread is found by its name, its stack pointer (where it blocks)
//! from `/proc/self/task/<tid>/syscall`, and the resident size of the
//! mapping that holds it from `/proc/self/smaps`. Over ws and over wss
//! (whose busy reads are deeper still), one after the other in one test:
//! the server runs in this process, and a second test's readers would be
//! found too.

mod common;

use std::time::Duration;

use common::tls::Over;
use common::{TestServer, WAIT, eventually};
use threadchat::Config;
use tungstenite::Message;

/// The server's one reader thread, seen from the kernel while it is blocked
/// in a system call.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reader {
    /// The system call it waits in.
    syscall: i64,
    /// Its stack pointer there.
    sp: usize,
    /// The top of the stack mapping that holds `sp`.
    top: usize,
    /// That mapping's resident size, in KiB.
    resident_kib: u64,
}

impl Reader {
    /// Pages from the top of the stack down to where the reader waits:
    /// what it cannot do without.
    fn pages_in_use(&self) -> u64 {
        let page = 4096;
        (self.top - self.sp).div_ceil(page) as u64
    }

    fn resident_pages(&self) -> u64 {
        self.resident_kib / 4
    }

    fn in_read(&self) -> bool {
        self.syscall == libc::SYS_recvfrom
    }

    /// Waiting where a quiet reader waits (`poll`; glibc makes it `ppoll`
    /// where there is no `poll` system call).
    fn in_poll(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        let poll = libc::SYS_poll;
        #[cfg(not(target_arch = "x86_64"))]
        let poll = libc::SYS_ppoll;
        self.syscall == poll
    }
}

/// The reader, if there is exactly one and it is blocked in a system call.
fn reader() -> Option<Reader> {
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
    // "nr arg1 … arg6 sp pc" while in a system call.
    let syscall = std::fs::read_to_string(reader.join("syscall")).ok()?;
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    if fields.len() != 9 {
        return None;
    }
    let hex = |field: &str| usize::from_str_radix(field.trim_start_matches("0x"), 16).ok();
    let sp = hex(fields[7])?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut top = None;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((low, high)) = range.split_once('-')
            && let (Some(low), Some(high)) = (hex(low), hex(high))
        {
            top = (low..high).contains(&sp).then_some(high);
            continue;
        }
        if let (Some(top), Some(rss)) = (top, line.strip_prefix("Rss:")) {
            return Some(Reader {
                syscall: fields[0].parse().ok()?,
                sp,
                top,
                resident_kib: rss.trim().trim_end_matches("kB").trim().parse().ok()?,
            });
        }
    }
    None
}

/// The reader once it has waited in the same place, in a system call that
/// `wanted` accepts, for a moment (the same on two looks).
fn reader_waiting(wanted: impl Fn(&Reader) -> bool) -> Reader {
    let mut last = None;
    let mut found = None;
    let settled = eventually(WAIT, || {
        let now = reader().filter(&wanted);
        if now.is_some() && now == last {
            found = now;
            return true;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(settled, "the reader never waited as expected: {last:?}");
    found.expect("settled")
}

/// A quiet reader: waiting in `poll`, with nothing below its wait
/// resident but the part of a page `STACK_KEPT_BELOW` reaches into.
fn assert_shallow(quiet: &Reader) {
    assert!(
        quiet.resident_pages() <= quiet.pages_in_use() + 1,
        "a quiet reader keeps only the stack it waits on: {quiet:?}"
    );
    // In an optimised build that is two pages: the thread's own data at
    // the top, and the frames down to the wait.
    if !cfg!(debug_assertions) {
        assert!(quiet.resident_kib <= 8, "{quiet:?}");
    }
}

/// Sends a ping and reads the pong.
fn ping(client: &mut common::Client) {
    client
        .ws
        .send(Message::Ping(b"still there?".to_vec().into()))
        .unwrap();
    match client.ws.read().expect("a pong") {
        Message::Pong(payload) => assert_eq!(&payload[..], b"still there?"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[test]
fn a_quiet_reader_waits_shallow_and_still_answers_pings_logs_in_and_chats() {
    // One after the other: each server's reader must be the only one.
    quiet_reader_over(Over::Plain);
    quiet_reader_over(Over::Tls);
}

fn quiet_reader_over(over: Over) {
    let server = TestServer::over(
        over,
        Config {
            login_timeout: Duration::ZERO,
            ..Config::ephemeral()
        },
    );
    let mut client = server.connect();

    // Quiet since its opening: it waits in `poll`, shallow.
    let quiet = reader_waiting(Reader::in_poll);
    assert_shallow(&quiet);

    // Woken by a ping, it answers, then waits in `read` for a while:
    // deeper than when quiet. (On a slow machine the second may pass before
    // the reader is seen in `read`; another ping then.)
    let mut busy = None;
    for _ in 0..20 {
        ping(&mut client);
        busy = reader().filter(Reader::in_read);
        if busy.is_some() {
            break;
        }
    }
    let busy = busy.expect("the reader seen waiting in read after a ping");
    assert!(
        busy.sp < quiet.sp,
        "a quiet reader waits nearer the top of its stack than a busy one: {quiet:?}, {busy:?}"
    );
    assert!(busy.resident_pages() >= busy.pages_in_use());

    // Quiet again: the pages the read used are given back.
    let quiet_again = reader_waiting(Reader::in_poll);
    assert_eq!(quiet_again.sp, quiet.sp, "the same shallow wait");
    assert_shallow(&quiet_again);

    // A login after the silence, and a chat.
    client.login("late");
    client.chat("after a quiet spell");
    assert_eq!(client.recv_json()["text"], "after a quiet spell");

    // Quiet after chatting: shallow again, and the next chat goes through.
    assert_shallow(&reader_waiting(Reader::in_poll));
    client.chat("and again");
    assert_eq!(client.recv_json()["text"], "and again");
    ping(&mut client);
    drop(client);
    assert!(server.shutdown(), "every connection ended");
}
