//! A real `redis-server` for the cluster tests, and a way to send it a
//! command.
//!
//! Each test starts its own server on a free loopback port, in a temporary
//! directory, with persistence off: a restart is a Redis that lost
//! everything, which is the harshest return the cluster must survive. The
//! server is a child process stopped by its PID (SIGTERM, then SIGKILL), never
//! by name, so tests that run at once never touch each other's Redis.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ::redis::FromRedisValue;

use super::{BinaryServer, WAIT, eventually};

/// Longest one command (connect, send, answer) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

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

    /// Runs one command and returns its reply as a `T` (an `Err` for a
    /// transport problem or Redis's refusal).
    pub fn command<T: FromRedisValue>(&self, args: &[&str]) -> Result<T, String> {
        command(self.addr(), args)
    }

    /// The keys matching `pattern`, sorted (KEYS: fine on a test's tiny
    /// data set, never on a real one).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.command(&["KEYS", pattern]).expect("KEYS");
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

/// PING on a fresh connection: `Ok` only for PONG.
pub fn ping(addr: SocketAddr) -> Result<(), String> {
    match command::<String>(addr, &["PING"])? {
        pong if pong == "PONG" => Ok(()),
        other => Err(format!("PING answered {other:?}")),
    }
}

/// Sends one command on a fresh connection (the `redis` crate's blocking
/// client, as the server uses) and reads its reply as a `T`, every step
/// bounded by `COMMAND_TIMEOUT`. A refusal by Redis is an `Err` too.
pub fn command<T: FromRedisValue>(addr: SocketAddr, args: &[&str]) -> Result<T, String> {
    let (name, rest) = args.split_first().ok_or("no command")?;
    let client = ::redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let mut con = client
        .get_connection_with_timeout(COMMAND_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))
        .and_then(|()| con.set_write_timeout(Some(COMMAND_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    ::redis::cmd(name)
        .arg(rest)
        .query(&mut con)
        .map_err(|e| e.to_string())
}
