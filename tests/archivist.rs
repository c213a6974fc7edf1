//! The archivist against real SQLite files in a temporary directory: ids,
//! the stored text, the reads, retention, the start-up refusals, the order
//! of answers, and a process killed with SIGKILL after committing.
//!
//! Two tests re-run this test binary as a child (`child_process`, ignored
//! when run directly): one to be killed mid-write, one to open files as an
//! unprivileged user (file permissions do not stop root).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use threadchat::archivist::{
    self, ArchiveConfig, ArchiveError, ArchiveErrorKind, Archived, Audience, Job, Read, StoredChat,
};

/// Longest a test waits for any one answer.
const WAIT: Duration = Duration::from_secs(10);

/// Tells the re-run test binary what to do (see `child_process`).
const CHILD_ROLE: &str = "THREADCHAT_ARCHIVIST_CHILD";
const CHILD_PATH: &str = "THREADCHAT_ARCHIVIST_PATH";

/// An archivist thread on a file, stopped (and the file closed) when dropped.
struct Running {
    jobs: Option<Sender<Job>>,
    reads: Sender<Read>,
    events: Receiver<Archived>,
    handle: Option<JoinHandle<()>>,
}

impl Running {
    fn start(config: &ArchiveConfig) -> Running {
        let archive = archivist::open(config).expect("open the history file");
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (reads, reads_rx) = archivist::read_queue();
        let handle = archive
            .spawn(jobs_rx, reads_rx, events_tx, None)
            .expect("spawn");
        Running {
            jobs: Some(jobs),
            reads,
            events,
            handle: Some(handle),
        }
    }

    fn send(&self, job: Job) {
        self.jobs
            .as_ref()
            .unwrap()
            .send(job)
            .expect("archivist alive");
    }

    fn append(&self, room: &str, conn: u64, text: &str) {
        self.send(Job::Append {
            room: room.to_string(),
            conn,
            json: chat_json(room, text).into_bytes(),
            audience: Audience::Room,
        });
    }

    fn next(&self) -> Archived {
        self.events.recv_timeout(WAIT).expect("an answer in time")
    }

    /// Sends `n` appends to `room` and waits for all of them to be committed.
    fn append_committed(&self, room: &str, n: usize) -> Vec<StoredChat> {
        for i in 0..n {
            self.append(room, i as u64, &format!("chat {i}"));
        }
        let mut chats = Vec::new();
        while chats.len() < n {
            match self.next() {
                Archived::Committed(batch) => chats.extend(batch.into_iter().map(|(_, _, c)| c)),
                other => panic!("expected a commit, got {other:?}"),
            }
        }
        chats
    }

    fn load(&self, room: &str, recent: usize) -> (u64, Vec<StoredChat>) {
        self.send(Job::Load {
            room: room.to_string(),
            recent,
        });
        // The room's moderation rules come just before its chats.
        let mut next = self.next();
        if let Archived::Rules { room: got, .. } = &next
            && got == room
        {
            next = self.next();
        }
        match next {
            Archived::Loaded {
                room: got,
                last_id,
                recent,
            } if got == room => (last_id, recent),
            other => panic!("expected Loaded, got {other:?}"),
        }
    }

    fn since(&self, room: &str, after: u64) -> (Vec<StoredChat>, bool) {
        self.send(Job::Since {
            room: room.to_string(),
            conn: 99,
            after,
        });
        match self.next() {
            Archived::SinceLoaded {
                conn: 99,
                chats,
                complete,
                ..
            } => (chats, complete),
            other => panic!("expected SinceLoaded, got {other:?}"),
        }
    }

    fn page(&self, room: &str, before: Option<u64>, limit: usize) -> Vec<StoredChat> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let page = Read::Page {
            room: room.to_string(),
            before,
            limit,
            reply,
        };
        self.reads.send(page).expect("archivist alive");
        answer
            .recv_timeout(WAIT)
            .expect("a page in time")
            .expect("a page")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(handle) = self.handle.take() {
            handle.join().expect("the archivist ends cleanly");
        }
    }
}

fn chat_json(room: &str, text: &str) -> String {
    serde_json::json!({"type": "chat", "text": text, "username": "walter", "room": room})
        .to_string()
}

fn ids(chats: &[StoredChat]) -> Vec<u64> {
    chats.iter().map(|c| c.id).collect()
}

fn config(path: &Path) -> ArchiveConfig {
    ArchiveConfig::new(path.to_str().unwrap())
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Checks that opening `path` fails with `kind`, names the file, says
/// `words`, and leaves the directory's files byte for byte as they were.
fn assert_refused(path: &Path, kind: ArchiveErrorKind, words: &str) -> ArchiveError {
    let dir = path.parent().unwrap();
    let before: Vec<(String, Vec<u8>)> = listing(dir)
        .into_iter()
        .map(|name| (name.clone(), std::fs::read(dir.join(&name)).unwrap()))
        .collect();
    let error = match archivist::open(&config(path)) {
        Ok(_) => panic!("{} was opened", path.display()),
        Err(error) => error,
    };
    let message = error.to_string();
    assert_eq!(error.kind, kind, "{message}");
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains(words), "{message}");
    let after: Vec<(String, Vec<u8>)> = listing(dir)
        .into_iter()
        .map(|name| (name.clone(), std::fs::read(dir.join(&name)).unwrap()))
        .collect();
    assert!(
        before == after,
        "the refused open changed {}",
        dir.display()
    );
    error
}

#[test]
fn ids_increase_per_room_and_across_reopening() {
    let dir = temp_dir();
    let path = dir.path().join("history.db");
    {
        let archive = Running::start(&config(&path));
        assert_eq!(ids(&archive.append_committed("a", 3)), [1, 2, 3]);
        assert_eq!(ids(&archive.append_committed("b", 2)), [1, 2]);
    }
    let archive = Running::start(&config(&path));
    assert_eq!(ids(&archive.append_committed("a", 2)), [4, 5]);
    assert_eq!(ids(&archive.append_committed("b", 1)), [3]);
    assert_eq!(archive.load("a", 10).0, 5);
    let ts: Vec<u64> = archive.page("a", None, 10).iter().map(|c| c.ts).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
}

#[test]
fn the_stored_text_is_exactly_the_broadcast_text() {
    let dir = temp_dir();
    let path = dir.path().join("history.db");
    let json = chat_json("lobby", "héllo \"quoted\" } \u{1F600}");
    let committed = {
        let archive = Running::start(&config(&path));
        archive.send(Job::Append {
            room: "lobby".to_string(),
            conn: 42,
            json: json.clone().into_bytes(),
            audience: Audience::Room,
        });
        let Archived::Committed(mut batch) = archive.next() else {
            panic!("expected a commit")
        };
        assert_eq!(batch.len(), 1);
        let (room, conn, chat) = batch.remove(0);
        assert_eq!((room.as_str(), conn), ("lobby", 42));
        let expected = format!("{},\"id\":1,\"ts\":{}}}", &json[..json.len() - 1], chat.ts);
        assert_eq!(std::str::from_utf8(&chat.json).unwrap(), expected);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(chat.ts <= now && now - chat.ts < 60_000, "ts {}", chat.ts);
        let parsed: serde_json::Value = serde_json::from_slice(&chat.json).unwrap();
        assert_eq!(parsed["id"], 1);
        assert_eq!(parsed["text"], "héllo \"quoted\" } \u{1F600}");
        assert_eq!(archive.load("lobby", 5).1, std::slice::from_ref(&chat));
        chat
    };
    let archive = Running::start(&config(&path));
    assert_eq!(
        archive.page("lobby", None, 5),
        std::slice::from_ref(&committed)
    );
    assert_eq!(archive.since("lobby", 0).0, [committed]);
}

#[test]
fn load_gives_the_last_n_chats_oldest_first_and_the_last_id() {
    let dir = temp_dir();
    let archive = Running::start(&config(&dir.path().join("h.db")));
    assert_eq!(archive.load("empty", 50), (0, vec![]));
    let chats = archive.append_committed("a", 8);
    let (last_id, recent) = archive.load("a", 3);
    assert_eq!(last_id, 8);
    assert_eq!(recent, chats[5..]);
    assert_eq!(ids(&archive.load("a", 50).1), (1..=8).collect::<Vec<_>>());
}

#[test]
fn since_gives_exactly_the_chats_after_the_id() {
    let dir = temp_dir();
    let archive = Running::start(&config(&dir.path().join("h.db")));
    let chats = archive.append_committed("a", 6);
    archive.append_committed("b", 3);
    assert_eq!(archive.since("a", 2), (chats[2..].to_vec(), true));
    assert_eq!(archive.since("a", 6), (vec![], true));
    assert_eq!(archive.since("a", 0), (chats.clone(), true));
}

#[test]
fn since_beyond_the_cap_gives_the_newest_and_is_incomplete() {
    let dir = temp_dir();
    let mut config = config(&dir.path().join("h.db"));
    config.history_max = 4;
    let archive = Running::start(&config);
    archive.append_committed("a", 10);
    let (chats, complete) = archive.since("a", 1);
    assert_eq!(ids(&chats), [7, 8, 9, 10]);
    assert!(!complete);
    let (chats, complete) = archive.since("a", 6);
    assert_eq!(ids(&chats), [7, 8, 9, 10]);
    assert!(complete);
}

#[test]
fn since_an_unknown_id_is_incomplete() {
    let dir = temp_dir();
    let archive = Running::start(&config(&dir.path().join("h.db")));
    archive.append_committed("a", 3);
    let (chats, complete) = archive.since("a", 4);
    assert!(!complete);
    assert_eq!(ids(&chats), [1, 2, 3], "the newest chats, to start afresh");
    let (chats, complete) = archive.since("nowhere", 17);
    assert_eq!((chats, complete), (vec![], false));
}

#[test]
fn page_gives_the_chats_before_an_id_oldest_first() {
    let dir = temp_dir();
    let archive = Running::start(&config(&dir.path().join("h.db")));
    archive.append_committed("a", 300);
    assert_eq!(ids(&archive.page("a", None, 3)), [298, 299, 300]);
    assert_eq!(ids(&archive.page("a", Some(10), 4)), [6, 7, 8, 9]);
    assert_eq!(ids(&archive.page("a", Some(3), 50)), [1, 2]);
    assert_eq!(ids(&archive.page("a", Some(1), 50)), Vec::<u64>::new());
    let most = archive.page("a", None, 1000);
    assert_eq!(most.len(), 200, "a page holds at most 200");
    assert_eq!(most[0].id, 101);
    assert!(archive.page("nowhere", None, 10).is_empty());
}

#[test]
fn retention_deletes_old_chats_but_ids_are_never_reused() {
    let dir = temp_dir();
    let path = dir.path().join("h.db");
    let mut cfg = config(&path);
    cfg.retain = 5;
    {
        let archive = Running::start(&cfg);
        archive.append_committed("a", 20);
        // Deleted in the background once the chat is quiet.
        let deadline = Instant::now() + WAIT;
        loop {
            let left = ids(&archive.page("a", None, 200));
            if left == [16, 17, 18, 19, 20] {
                break;
            }
            assert!(Instant::now() < deadline, "still stored: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (chats, complete) = archive.since("a", 3);
        assert_eq!((ids(&chats), complete), (vec![16, 17, 18, 19, 20], false));
        assert_eq!(archive.load("a", 50).0, 20);
    }
    // Also after a restart, and with the limit lowered meanwhile.
    cfg.retain = 2;
    let archive = Running::start(&cfg);
    assert_eq!(ids(&archive.append_committed("a", 1)), [21]);
    let deadline = Instant::now() + WAIT;
    while ids(&archive.page("a", None, 200)) != [20, 21] {
        assert!(Instant::now() < deadline, "retention never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_whole_store_is_bounded_and_the_stalest_rooms_lose_their_chats_first() {
    let dir = temp_dir();
    let path = dir.path().join("h.db");
    let mut cfg = config(&path);
    cfg.retain_total = 10;
    {
        let archive = Running::start(&cfg);
        // Oldest activity first: "old" is the stalest room once "new" talks.
        archive.append_committed("old", 6);
        // Activity is stamped to the millisecond: a later one for "mid",
        // which would otherwise tie with "old" for the stalest room.
        std::thread::sleep(Duration::from_millis(5));
        archive.append_committed("mid", 4);
        std::thread::sleep(Duration::from_millis(5)); // a later ms for "new"
        archive.append_committed("new", 4);
        let deadline = Instant::now() + WAIT;
        loop {
            let kept = [
                ids(&archive.page("old", None, 200)),
                ids(&archive.page("mid", None, 200)),
                ids(&archive.page("new", None, 200)),
            ];
            if kept.iter().map(Vec::len).sum::<usize>() <= 10 {
                // Only the stalest room paid, its oldest chats first.
                assert_eq!(kept[0], [5, 6], "{kept:?}");
                assert_eq!(kept[1], [1, 2, 3, 4], "{kept:?}");
                assert_eq!(kept[2], [1, 2, 3, 4], "{kept:?}");
                break;
            }
            assert!(Instant::now() < deadline, "still stored: {kept:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Ids go on where they were.
        assert_eq!(ids(&archive.append_committed("old", 1)), [7]);
    }
    // The bound counts what the file holds at start-up too. "old" spoke
    // last now, so "mid" goes first, then the oldest of "new".
    cfg.retain_total = 4;
    let archive = Running::start(&cfg);
    let deadline = Instant::now() + WAIT;
    loop {
        let total: usize = ["old", "mid", "new"]
            .iter()
            .map(|room| archive.page(room, None, 200).len())
            .sum();
        if total <= 4 {
            assert!(archive.page("mid", None, 200).is_empty());
            assert_eq!(ids(&archive.page("new", None, 200)), [4]);
            assert_eq!(ids(&archive.page("old", None, 200)), [5, 6, 7]);
            break;
        }
        assert!(Instant::now() < deadline, "{total} chats still stored");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_corrupt_file_is_refused_and_left_as_it_is() {
    let dir = temp_dir();
    let path = dir.path().join("history.db");
    // 8 KiB of pseudo-random bytes (xorshift).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(
        &path,
        ArchiveErrorKind::NotADatabase,
        "file is not a database",
    );
    assert_eq!(listing(dir.path()), ["history.db"]);
}

#[test]
fn a_newer_schema_version_is_refused_and_left_as_it_is() {
    let dir = temp_dir();
    let path = dir.path().join("history.db");
    {
        Running::start(&config(&path)).append_committed("a", 2);
    }
    let next = archivist::SCHEMA_VERSION + 1;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", next).unwrap();
    }
    let error = assert_refused(&path, ArchiveErrorKind::SchemaVersion, "schema version");
    assert!(error.cause.contains(&format!("version {next}")), "{error}");
    assert!(error.cause.contains("newer threadchat"), "{error}");
}

#[test]
fn another_programs_sqlite_file_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    assert_refused(
        &path,
        ArchiveErrorKind::SchemaVersion,
        "not a threadchat history file",
    );
}

#[test]
fn a_second_open_of_the_same_file_is_refused_as_locked() {
    let dir = temp_dir();
    let path = dir.path().join("history.db");
    let first = Running::start(&config(&path));
    first.append_committed("a", 3);
    assert_refused(
        &path,
        ArchiveErrorKind::Locked,
        "locked by another process (another threadchat server?)",
    );
    // The failed attempt took nothing from the first: it still writes, and
    // the file is still locked.
    assert_eq!(ids(&first.append_committed("a", 1)), [4]);
    assert_refused(&path, ArchiveErrorKind::Locked, "locked by another process");
    drop(first);
    let again = Running::start(&config(&path));
    assert_eq!(again.load("a", 10).0, 4);
}

#[test]
fn a_path_under_a_regular_file_is_refused_as_unwritable() {
    let dir = temp_dir();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"keep me").unwrap();
    let error = archivist::open(&config(&file.join("history.db")))
        .err()
        .expect("refused");
    assert_eq!(error.kind, ArchiveErrorKind::Unwritable, "{error}");
    assert!(
        error.to_string().contains("not-a-dir/history.db"),
        "{error}"
    );
    assert!(error.to_string().contains("Not a directory"), "{error}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn a_path_in_a_missing_directory_is_refused_as_unwritable() {
    let dir = temp_dir();
    let path = dir.path().join("no-such-dir").join("history.db");
    let error = archivist::open(&config(&path)).err().expect("refused");
    assert_eq!(error.kind, ArchiveErrorKind::Unwritable, "{error}");
    assert!(
        error.to_string().contains("no-such-dir/history.db"),
        "{error}"
    );
    assert!(error.to_string().contains("unable to open"), "{error}");
    assert!(listing(dir.path()).is_empty());
}

/// Opens `path` as a user without rights over root's files: in a child
/// process running as `nobody` when the tests run as root (whom permissions
/// do not stop), else here. The child runs `exe`, a copy of this test binary
/// where `nobody` may run it. Returns the error's kind and text.
fn open_unprivileged(path: &Path, exe: &Path) -> (String, String) {
    if unsafe { libc::geteuid() } != 0 {
        return match archivist::open(&config(path)) {
            Ok(_) => ("opened".to_string(), String::new()),
            Err(error) => (format!("{:?}", error.kind), error.to_string()),
        };
    }
    let output = Command::new(exe)
        .args(["--ignored", "--exact", "child_process", "--nocapture"])
        .current_dir(exe.parent().unwrap())
        .env(CHILD_ROLE, "open")
        .env(CHILD_PATH, path)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .expect("run the test binary as nobody");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("open-result "))
        .unwrap_or_else(|| panic!("no result from the child: {stdout}"));
    let (kind, message) = line.split_once(' ').unwrap_or((line, ""));
    (kind.to_string(), message.to_string())
}

#[test]
fn files_and_directories_that_cannot_be_written_are_refused() {
    let dir = temp_dir();
    let locked_dir = dir.path().join("readonly");
    std::fs::create_dir(&locked_dir).unwrap();
    let existing = locked_dir.join("existing.db");
    let writable = locked_dir.join("writable.db");
    for path in [&existing, &writable] {
        Running::start(&config(path)).append_committed("a", 1);
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The build directory may be closed to other users; a copy here is not.
    let exe = dir.path().join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&locked_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o444)).unwrap();
    // A writable file in a directory that is not: its write-ahead log
    // cannot be made.
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before: Vec<Vec<u8>> = [&existing, &writable]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    for path in [
        locked_dir.join("new.db"),
        existing.clone(),
        writable.clone(),
    ] {
        let (kind, message) = open_unprivileged(&path, &exe);
        assert_eq!(kind, "Unwritable", "{}: {message}", path.display());
        assert!(message.contains(path.to_str().unwrap()), "{message}");
        assert!(message.contains("must be writable"), "{message}");
    }
    let after: Vec<Vec<u8>> = [&existing, &writable]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(before == after, "a refused open changed a file");
    assert_eq!(
        listing(&locked_dir),
        ["existing.db", "writable.db"],
        "nothing was created"
    );
    std::fs::set_permissions(&locked_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_read_is_answered_after_the_appends_sent_before_it_are_committed() {
    let dir = temp_dir();
    let archive = Running::start(&config(&dir.path().join("h.db")));
    let mut last = 0;
    for round in 0..50u64 {
        // Sent without waiting: the archivist may batch as it likes, but the
        // answer comes after the commits of 1 and 2 and holds them, and the
        // commit of 3 comes after it.
        archive.append("a", 1, "x");
        archive.append("a", 2, "y");
        archive.send(Job::Since {
            room: "a".to_string(),
            conn: 1000 + round,
            after: last,
        });
        archive.append("a", 3, "z");
        let mut committed_before = Vec::new();
        let answer = loop {
            match archive.next() {
                Archived::Committed(batch) => committed_before.extend(batch.iter().map(|b| b.1)),
                Archived::SinceLoaded {
                    conn,
                    chats,
                    complete,
                    ..
                } => break (conn, ids(&chats), complete),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(committed_before, [1, 2]);
        assert_eq!(answer, (1000 + round, vec![last + 1, last + 2], true));
        match archive.next() {
            Archived::Committed(batch) => {
                assert_eq!(batch.len(), 1);
                assert_eq!((batch[0].1, batch[0].2.id), (3, last + 3));
            }
            other => panic!("unexpected {other:?}"),
        }
        last += 3;
    }
    // A page, answered on its own channel, holds what was committed
    // before it (all that anyone was sent).
    archive.append("a", 4, "w");
    assert!(matches!(archive.next(), Archived::Committed(b) if b[0].2.id == last + 1));
    assert_eq!(ids(&archive.page("a", None, 2)), [last, last + 1]);
}

#[test]
fn reads_wait_in_their_own_bounded_queue_behind_the_chats() {
    let dir = temp_dir();
    let archive = archivist::open(&config(&dir.path().join("h.db"))).expect("open");
    let (jobs, jobs_rx) = crossbeam_channel::unbounded();
    let (events_tx, events) = crossbeam_channel::unbounded::<Archived>();
    let (reads, reads_rx) = archivist::read_queue();
    // Before the archivist starts: its queue of reads filled to the brim,
    // then a chat.
    let mut answers = Vec::new();
    for _ in 0..threadchat::config::READ_QUEUE_CAPACITY {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let page = Read::Page {
            room: "a".to_string(),
            before: None,
            limit: 10,
            reply,
        };
        reads.try_send(page).expect("room in the queue");
        answers.push(answer);
    }
    let (reply, _) = crossbeam_channel::bounded(1);
    let one_more = Read::Probe { reply };
    assert!(
        reads.try_send(one_more).is_err(),
        "the queue of reads is bounded"
    );
    jobs.send(Job::Append {
        room: "a".to_string(),
        conn: 1,
        json: chat_json("a", "first").into_bytes(),
        audience: Audience::Room,
    })
    .unwrap();
    let handle = archive
        .spawn(jobs_rx, reads_rx, events_tx, None)
        .expect("spawn");
    // Chats go first: the chat is committed before any read is answered,
    // so every page has it.
    assert!(matches!(
        events.recv_timeout(WAIT).expect("a commit"),
        Archived::Committed(chats) if chats.len() == 1
    ));
    for answer in answers {
        let page = answer.recv_timeout(WAIT).expect("a page").expect("read");
        assert_eq!(ids(&page), [1]);
    }
    drop(jobs);
    handle.join().unwrap();
}

#[test]
fn a_probe_is_answered_after_a_write() {
    let dir = temp_dir();
    let archive = Running::start(&config(&dir.path().join("h.db")));
    let (reply, answer) = crossbeam_channel::bounded(1);
    archive.reads.send(Read::Probe { reply }).unwrap();
    assert_eq!(answer.recv_timeout(WAIT).expect("an answer"), Ok(()));
}

#[test]
fn a_chat_that_is_not_a_json_object_fails_and_takes_no_id() {
    let dir = temp_dir();
    let archive = Running::start(&config(&dir.path().join("h.db")));
    archive.send(Job::Append {
        room: "a".to_string(),
        conn: 5,
        json: b"\"just a string\"".to_vec(),
        audience: Audience::Room,
    });
    match archive.next() {
        Archived::Failed(failed) => {
            assert_eq!(failed.len(), 1);
            assert_eq!((failed[0].0.as_str(), failed[0].1), ("a", 5));
            assert!(failed[0].2.contains("not a JSON object"), "{}", failed[0].2);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(ids(&archive.append_committed("a", 1)), [1]);
}

/// Kills its child on drop, so that a failing test leaves no process behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_chat_committed_before_a_sigkill_is_there_after_it() {
    let dir = temp_dir();
    let path = dir.path().join("history.db");
    let mut child = ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_process", "--nocapture"])
            .env(CHILD_ROLE, "write")
            .env(CHILD_PATH, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the test binary as a child"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = crossbeam_channel::unbounded();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // (room, id) -> exact text, for every chat the child saw committed.
    let mut reported: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut record = |line: String| {
        if let Some(rest) = line.strip_prefix("committed ") {
            let mut parts = rest.splitn(3, ' ');
            let room = parts.next().unwrap().to_string();
            let id: u64 = parts.next().unwrap().parse().unwrap();
            reported.insert((room, id), parts.next().unwrap().to_string());
        }
    };
    let deadline = Instant::now() + WAIT;
    let mut seen = 0;
    while seen < 2000 {
        let line = lines
            .recv_deadline(deadline)
            .expect("the child commits chats in time");
        seen += usize::from(line.starts_with("committed "));
        record(line);
    }
    // While the child runs, its lock keeps this process out.
    let error = archivist::open(&config(&path)).err().expect("locked");
    assert_eq!(error.kind, ArchiveErrorKind::Locked, "{error}");
    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    reader.join().unwrap();
    for line in lines.try_iter() {
        record(line);
    }
    let archive = Running::start(&config(&path));
    for room in ["r1", "r2"] {
        let mut stored = Vec::new();
        let mut before = None;
        loop {
            let page = archive.page(room, before, 200);
            if page.is_empty() {
                break;
            }
            before = Some(page[0].id);
            stored.splice(0..0, page);
        }
        // Ids 1..=n, no gaps, and each reported chat exactly as reported.
        assert_eq!(ids(&stored), (1..=stored.len() as u64).collect::<Vec<_>>());
        for ((r, id), text) in reported.iter().filter(|((r, _), _)| r == room) {
            let chat = stored
                .get(*id as usize - 1)
                .unwrap_or_else(|| panic!("{r} {id} was committed but is lost"));
            assert_eq!(std::str::from_utf8(&chat.json).unwrap(), text);
        }
        let next = archive.append_committed(room, 1)[0].id;
        assert_eq!(next, stored.len() as u64 + 1);
    }
    assert!(reported.len() >= 2000);
}

/// Not a test on its own: the child process of the tests above, told what
/// to do by environment variables.
#[test]
#[ignore = "run by other tests as a child process"]
fn child_process() {
    let role = std::env::var(CHILD_ROLE).unwrap_or_default();
    let path = PathBuf::from(std::env::var_os(CHILD_PATH).unwrap_or_default());
    match role.as_str() {
        "open" => match archivist::open(&config(&path)) {
            Ok(_) => println!("open-result opened"),
            Err(error) => println!("open-result {:?} {error}", error.kind),
        },
        "write" => write_until_killed(&path),
        _ => panic!("{CHILD_ROLE} is not set: this is run by other tests"),
    }
}

/// Appends chats to two rooms in bursts, printing each as it is committed,
/// for at most 30 s (the parent kills it long before).
fn write_until_killed(path: &Path) {
    let archive = archivist::open(&config(path)).expect("open");
    let (jobs, jobs_rx) = crossbeam_channel::unbounded();
    let (events_tx, events) = crossbeam_channel::unbounded::<Archived>();
    let (_reads, reads_rx) = archivist::read_queue();
    let _handle = archive.spawn(jobs_rx, reads_rx, events_tx, None).unwrap();
    let stop = Instant::now() + Duration::from_secs(30);
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    while Instant::now() < stop {
        for _ in 0..20 {
            n += 1;
            let room = if n.is_multiple_of(3) { "r2" } else { "r1" };
            let json = chat_json(room, &format!("message {n}"));
            jobs.send(Job::Append {
                room: room.to_string(),
                conn: n,
                json: json.into_bytes(),
                audience: Audience::Room,
            })
            .unwrap();
        }
        let mut waiting = 20;
        while waiting > 0 {
            let Ok(Archived::Committed(batch)) = events.recv_timeout(Duration::from_secs(10))
            else {
                panic!("the archivist stopped committing");
            };
            waiting -= batch.len();
            for (room, _, chat) in batch {
                let text = std::str::from_utf8(&chat.json).unwrap();
                writeln!(out, "committed {room} {} {text}", chat.id).unwrap();
            }
            out.flush().unwrap();
        }
    }
}
