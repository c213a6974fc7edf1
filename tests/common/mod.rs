//! Helpers shared by the integration tests: a server started in-process on an
//! ephemeral port, and a blocking tungstenite client that waits for frames
//! with a timeout (never a sleep); either may speak TLS (`tls.rs`), so that
//! a test can be run over ws and over wss alike.

#![allow(dead_code)] // each test file uses its own subset

pub mod moderation;
pub mod proxy;
pub mod redis;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use serde_json::{Value, json};
use std::sync::Arc;
use threadchat::{Config, Server, ServerHandle};
use tls::{Over, ServerTls, Transport};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// Longest a test waits for any one expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1:0, shut down when dropped.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    /// Over TLS: its certificate (kept for as long as the server runs) and
    /// the client configuration that trusts it, which `connect` and
    /// `login` use.
    tls: Option<ServerTls>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::with(Config::ephemeral())
    }

    pub fn with(config: Config) -> TestServer {
        Self::over(Over::Plain, config)
    }

    /// A server with `config`, over TLS with a certificate of its own
    /// (`Over::Tls`) or plain.
    pub fn over(over: Over, config: Config) -> TestServer {
        let tls = (over == Over::Tls).then(ServerTls::new);
        let config = match &tls {
            Some(tls) => tls.config(config),
            None => config,
        };
        let server = Server::bind(config).expect("bind an ephemeral port");
        let handle = server.spawn().expect("start the server");
        let addr = handle.local_addr();
        TestServer {
            handle: Some(handle),
            addr,
            tls,
        }
    }

    /// The client configuration that trusts this server's certificate;
    /// `None` for a plain server.
    pub fn client_tls(&self) -> Option<&Arc<ClientConfig>> {
        self.tls.as_ref().map(|tls| &tls.client)
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server running")
    }

    /// Stops the server gracefully; true if every connection ended in time.
    pub fn shutdown(mut self) -> bool {
        self.handle.take().expect("server running").shutdown()
    }

    pub fn connect(&self) -> Client {
        self.connect_to("/")
    }

    /// A client on `path`, over TLS if the server is.
    pub fn connect_to(&self, path: &str) -> Client {
        Client::connect_over(self.addr, path, self.client_tls())
    }

    /// A fresh client in room `room`, logged in as `name`.
    pub fn login_in(&self, room: &str, name: &str) -> Client {
        let mut client = self.connect_to(&format!("/r/{room}"));
        client.login(name);
        client
    }

    /// `GET path` on the server: the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// Logs a fresh client in and returns it, its own login already read.
    pub fn login(&self, name: &str) -> Client {
        let mut client = self.connect();
        client.login(name);
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

/// A blocking WebSocket client, over ws or wss.
pub struct Client {
    pub ws: WebSocket<Transport>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Self::connect_to(addr, "/")
    }

    /// Connects to a path: `/r/<room>` is a room.
    pub fn connect_to(addr: SocketAddr, path: &str) -> Client {
        Self::connect_over(addr, path, None)
    }

    /// Connects to a path, over wss trusting `tls` when it is given.
    pub fn connect_over(addr: SocketAddr, path: &str, tls: Option<&Arc<ClientConfig>>) -> Client {
        let (stream, url) = match tls {
            None => {
                let stream = TcpStream::connect(addr).expect("connect");
                stream.set_read_timeout(Some(WAIT)).unwrap();
                (Transport::Plain(stream), format!("ws://{addr}{path}"))
            }
            Some(config) => {
                let stream = tls::connect(addr, config.clone()).expect("TLS handshake");
                let url = format!("wss://localhost:{}{path}", addr.port());
                (Transport::Tls(Box::new(stream)), url)
            }
        };
        let (ws, _response) = tungstenite::client::client(url, stream).expect("handshake");
        Client { ws }
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    pub fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string());
    }

    pub fn chat(&mut self, text: &str) {
        self.send_json(json!({"type": "chat", "text": text, "username": "ignored"}));
    }

    /// Sends a login and waits for the broadcast that confirms it (after
    /// the room's history, which a first login gets first when history is
    /// on; tutorial clients ignore it, as they ignore any unknown type).
    pub fn login(&mut self, name: &str) -> Value {
        self.send_json(json!({"type": "login", "username": name}));
        let mut reply = self.recv_json();
        if reply["type"] == "history" {
            reply = self.recv_json();
        }
        assert_eq!(
            reply["type"], "login",
            "login of {name} answered with {reply}"
        );
        assert_eq!(reply["user_joined"], name.trim());
        reply
    }

    /// The next message, which must be a text frame of JSON; pings and pongs
    /// are skipped. Panics after `WAIT`.
    pub fn recv_json(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no message within {WAIT:?}");
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(&text).expect("server sent invalid JSON");
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(other) => panic!("expected a text message, got {other:?}"),
                Err(e) => panic!("expected a text message, got error {e}"),
            }
        }
    }

    /// The next text frame, as sent, if one comes before `deadline`; pings
    /// and pongs are skipped. For "nothing more arrives" as much as for
    /// "this arrives in time".
    pub fn recv_text_before(&mut self, deadline: Instant) -> Option<String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            let read = self.ws.read();
            self.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
            match read {
                Ok(Message::Text(text)) => return Some(text.to_string()),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(other) => panic!("expected a text message, got {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("expected a text message, got error {e}"),
            }
        }
    }

    /// Reads messages until one satisfies `wanted`, returning it and the
    /// number of messages skipped.
    pub fn recv_until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self.recv_json();
            if wanted(&message) {
                return message;
            }
        }
    }

    /// The next message must be an error; returns it.
    pub fn expect_error(&mut self) -> Value {
        let message = self.recv_json();
        assert_eq!(message["type"], "error", "expected an error, got {message}");
        assert!(message["error"].is_string() && message["details"].is_string());
        message
    }

    /// The next message must be the refusal of something unreadable.
    pub fn expect_decoding_error(&mut self) -> Value {
        let error = self.expect_error();
        let text = error["error"].as_str().unwrap_or_default();
        assert!(text.starts_with("error decoding"), "{error}");
        error
    }

    /// Reads until the server's close frame arrives; returns it.
    pub fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(e) => panic!("expected a close frame, got error {e}"),
            }
        }
    }

    /// A round trip through the dispatcher that nobody else sees: a chat
    /// before login is refused by the dispatcher, in order with everything
    /// it did before. Only for clients that are not logged in.
    pub fn barrier_while_logged_out(&mut self) {
        self.chat("barrier");
        let reply = self.expect_error();
        assert_eq!(reply["error"], "not logged in");
    }

    /// Drops the TCP connection without a close frame, like a killed process.
    pub fn vanish(self) {
        let stream = self.ws.get_ref();
        stream.shutdown(std::net::Shutdown::Both).ok();
    }
}

/// The texts of the chats in a `history` message or a page of the messages
/// API (its `messages`), in order.
pub fn texts(message: &Value) -> Vec<String> {
    message["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {message}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// The `active_users` of a presence message, as strings.
pub fn users(message: &Value) -> Vec<String> {
    message["active_users"]
        .as_array()
        .unwrap_or_else(|| panic!("no active_users in {message}"))
        .iter()
        .map(|u| u.as_str().expect("user names are strings").to_string())
        .collect()
}

/// Logs in a fresh probe client and returns who the server says is online,
/// the probe excluded. Proves the server still answers, too.
pub fn online_besides_probe(server: &TestServer, probe_name: &str) -> Vec<String> {
    let mut probe = server.connect();
    let joined = probe.login(probe_name);
    let mut list = users(&joined);
    assert_eq!(list.last().map(String::as_str), Some(probe_name));
    list.pop();
    probe.send_json(json!({"type": "disconnect", "username": probe_name}));
    probe.barrier_while_logged_out();
    list
}

/// `GET path` on any server at `addr`: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    );
    status_and_body(&response)
}

/// A raw HTTP response's status code (0 if unreadable) and its body.
pub fn status_and_body(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends raw bytes and reads the raw HTTP response until the server closes.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    String::from_utf8_lossy(&response).into_owned()
}

/// Threads of this process (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Polls `condition` until it holds or `timeout` passes: for state that has
/// no event to wait on (thread counts).
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server message as a tutorial client sees it: without the fields that
/// threadchat adds (`room`, and a chat's `id` and `ts`). Tutorial clients
/// ignore extra fields, so the rules about the tutorial's own fields are
/// checked on this view; the added fields have tests of their own.
pub fn tutorial_view(message: &Value) -> Value {
    let mut message = message.clone();
    if let Some(object) = message.as_object_mut() {
        for added in ["room", "id", "ts"] {
            object.remove(added);
        }
    }
    message
}

/// The `threadchat` binary running as a child process, killed (by its PID)
/// when dropped.
pub struct BinaryServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Started with `--tls-cert`: a client configuration that trusts it.
    pub tls: Option<Arc<ClientConfig>>,
    /// Everything it printed so far, for `start_logged`.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl BinaryServer {
    /// Starts the binary on 127.0.0.1:0 with `args` and waits for the
    /// start-up line that names its address.
    pub fn start(args: &[&str]) -> BinaryServer {
        Self::start_logged(args)
    }

    /// Starts the binary and keeps everything it prints (stdout and
    /// stderr), for `stop_and_read_log`.
    pub fn start_logged(args: &[&str]) -> BinaryServer {
        Self::start_over(args, None)
    }

    /// Starts the binary with `args`, and over TLS with `tls`'s certificate
    /// when it is given.
    pub fn start_over(args: &[&str], tls: Option<&ServerTls>) -> BinaryServer {
        use std::io::BufRead;
        let tls_args = tls.map(ServerTls::args).unwrap_or_default();
        use std::sync::{Arc, Mutex};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_threadchat"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .args(&tls_args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let log = Arc::new(Mutex::new(String::new()));
        let keep = |pipe: Box<dyn std::io::Read + Send>, log: Arc<Mutex<String>>| {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let readers = vec![
            keep(Box::new(child.stdout.take().unwrap()), log.clone()),
            keep(Box::new(child.stderr.take().unwrap()), log.clone()),
        ];
        // The start-up line says where the server listens.
        let scheme = if tls.is_some() { "wss://" } else { "ws://" };
        let found = eventually(WAIT, || log.lock().unwrap().contains(scheme));
        let text = log.lock().unwrap().clone();
        assert!(found, "the server printed no address:\n{text}");
        let addr = text
            .split(scheme)
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .expect("an address after ws://");
        BinaryServer {
            child,
            addr,
            tls: tls.map(|tls| tls.client.clone()),
            log,
            readers,
        }
    }

    /// A client on `path`, over TLS if the server is.
    pub fn connect_to(&self, path: &str) -> Client {
        Client::connect_over(self.addr, path, self.tls.as_ref())
    }

    /// Stops the server (SIGKILL) and returns all it printed.
    pub fn stop_and_read_log(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.log.lock().unwrap().clone()
    }

    /// Runs the binary with `args` to its end (killed if it is still
    /// running after `WAIT`): whether it exited on its own, its exit status,
    /// and what it printed (stdout and stderr).
    pub fn run_to_end(args: &[&str]) -> (Option<std::process::ExitStatus>, String) {
        use std::io::Read as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_threadchat"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the server binary");
        let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let out = drain(Box::new(child.stdout.take().unwrap()));
        let err = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
        (status, text)
    }

    /// SIGKILL, as a crash: no shutdown code runs.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
