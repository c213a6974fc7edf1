//! A real `redis-server` for the cluster tests, and the few words of its
//! protocol (RESP) the tests speak to it.
//!
//! Each test starts its own server on a free loopback port, in a temporary
//! directory, with persistence off: a restart is a Redis that lost
//! everything, which is the harshest return the cluster must survive. The
//! server is a child process stopped by its PID (SIGTERM, then SIGKILL), never
//! by name, so tests that run at once never touch each other's Redis.
//!
//! The client side is raw RESP over a `TcpStream` rather than the `redis`
//! crate: the harness must work before (and whether or not) the server links
//! that crate, and a PING or a KEYS is a few bytes each way.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BinaryServer, WAIT, eventually};

/// Longest one RESP exchange (connect, send, answer) may take.
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a SIGTERM'd Redis gets to exit before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Attempts at finding a port that nobody takes between our probe and
/// Redis's bind.
const PORT_ATTEMPTS: usize = 5;

/// A `redis-server` child process on 127.0.0.1, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// Its working directory (`--dir`) and log file (`redis.log`);
    /// removed on drop.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a Redis on a free loopback port and waits until it answers
    /// PING. Panics, with Redis's own log, if it cannot.
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("threadchat-redis-")
            .tempdir()
            .expect("a temporary directory for redis-server");
        let mut failures = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn(dir.path(), port) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        dir,
                    };
                }
                Err(why) => {
                    failures.push_str(&why);
                    failures.push('\n');
                }
            }
        }
        panic!("redis-server did not start:\n{failures}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What a node's `--redis` flag takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it (SIGTERM, SIGKILL after `STOP_GRACE`) and reaps it. Its
    /// data is gone: nothing is persisted.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, not yet reaped, so the id cannot
        // have been reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Only the reply is checked; the port may linger a moment, and
        // `restart` rebinds it (Redis sets SO_REUSEADDR).
        assert!(
            ping(self.addr()).is_err(),
            "redis on port {} still answers after being stopped",
            self.port
        );
    }

    /// Stops it and starts a fresh one on the same port, empty, waiting
    /// until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        let mut failures = String::new();
        // The old socket may be in TIME_WAIT for a moment; Redis's bind
        // allows that, but give a busy machine a few tries anyway.
        for _ in 0..PORT_ATTEMPTS {
            match spawn(self.dir.path(), self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) => {
                    failures.push_str(&why);
                    failures.push('\n');
                }
            }
        }
        panic!(
            "redis-server did not restart on port {}:\n{failures}",
            self.port
        );
    }

    /// Runs one command and returns its reply (an `Err` for a transport
    /// problem, `Ok(Resp::Error(..))` for Redis's refusal).
    pub fn command(&self, args: &[&str]) -> Result<Resp, String> {
        command(self.addr(), args)
    }

    /// The keys matching `pattern`, sorted (KEYS: fine on a test's tiny
    /// data set, never on a real one).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", pattern]).expect("KEYS");
        let mut keys: Vec<String> = reply
            .array()
            .unwrap_or_else(|| panic!("KEYS answered {reply:?}"))
            .iter()
            .map(|key| key.text().expect("key names are bulk strings"))
            .collect();
        keys.sort();
        keys
    }

    /// Starts `count` threadchat nodes on this Redis, each on its own
    /// ephemeral port, with `extra` flags after `--redis URL`.
    pub fn start_nodes(&self, count: usize, extra: &[&str]) -> Vec<BinaryServer> {
        let url = self.url();
        let mut args = vec!["--redis", url.as_str()];
        args.extend_from_slice(extra);
        (0..count).map(|_| BinaryServer::start(&args)).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `redis-server` in `dir` on `port` and waits for its PONG; on
/// failure the process is gone and the error carries its log.
fn spawn(dir: &Path, port: u16) -> Result<Child, String> {
    let log = dir.join("redis.log");
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("cannot run redis-server ({e}); `bash tests/redis/setup.sh` installs it")
        })?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut exited = None;
    let answered = eventually(WAIT, || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        ping(addr).is_ok()
    });
    if answered && exited.is_none() {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "port {port}: {}; its log:\n{}",
        match exited {
            Some(status) => format!("exited with {status}"),
            None => format!("no PONG within {WAIT:?}"),
        },
        std::fs::read_to_string(&log).unwrap_or_default()
    ))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// One reply of Redis's protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the nil bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the nil array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// A simple or bulk string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(text) => Some(text.clone()),
            Resp::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }

    pub fn integer(&self) -> Option<i64> {
        match self {
            Resp::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn array(&self) -> Option<&[Resp]> {
        match self {
            Resp::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// PING on a fresh connection: `Ok` only for PONG.
pub fn ping(addr: SocketAddr) -> Result<(), String> {
    match command(addr, &["PING"])? {
        Resp::Simple(pong) if pong == "PONG" => Ok(()),
        other => Err(format!("PING answered {other:?}")),
    }
}

/// Sends one command on a fresh connection and reads its reply, every step
/// bounded by `RESP_TIMEOUT`.
pub fn command(addr: SocketAddr, args: &[&str]) -> Result<Resp, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, RESP_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(RESP_TIMEOUT)).ok();
    stream.set_write_timeout(Some(RESP_TIMEOUT)).ok();
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    stream
        .write_all(&request)
        .map_err(|e| format!("send: {e}"))?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut impl BufRead) -> Result<Resp, String> {
    let mut line = String::new();
    let read = reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if read == 0 {
        return Err("connection closed before a reply".to_string());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply line")?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| format!("bad length or integer in {line:?}"))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Resp::Bulk(None),
            Ok(len) => {
                let mut bytes = vec![0; len + 2];
                reader
                    .read_exact(&mut bytes)
                    .map_err(|e| format!("read: {e}"))?;
                bytes.truncate(len);
                Resp::Bulk(Some(bytes))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Resp::Array(None),
            Ok(len) => Resp::Array(Some(
                (0..len)
                    .map(|_| read_reply(reader))
                    .collect::<Result<_, _>>()?,
            )),
        },
        _ => return Err(format!("not a RESP reply: {line:?}")),
    })
}
