//! threadchat behind nginx, TLS at nginx: README's "Deploying: behind nginx"
//! recipe, run for real.
//!
//! Each test builds the whole path in a temporary directory: a CA and a
//! certificate for `localhost`/`127.0.0.1` made with `openssl` (never a
//! committed key), the `threadchat` binary on a free loopback port with
//! `--trusted-proxy 127.0.0.1`, and Debian's `nginx` (installed by
//! `tests/nginx/setup.sh`, `make test` runs it) with the recipe's
//! `location /` in a configuration of its own: its own pid file, logs and
//! temporary paths under the directory, one process in the foreground
//! (`daemon off; master_process off;`), so that dropping the guard ends it
//! by its PID and nothing is left behind. The clients speak TLS to nginx
//! with rustls, trusting only the test's CA, and plain HTTP/WebSocket
//! inside it; nginx speaks plain HTTP/1.1 to threadchat.
//!
//! The rules: a login and a chat go through (the `Upgrade` headers), the
//! page is served over https, threadchat counts and logs the client nginx
//! saw and not what the client wrote in its own forwarding headers (the
//! `X-Forwarded-For`/`Forwarded` lines with `--trusted-proxy`), and a quiet
//! connection outlives nginx's timeouts because threadchat's pings come
//! more often (the timeout lines), while with pings rarer than the timeout
//! nginx cuts it (why the lines are there).
//!
//! Without nginx (a machine where setup.sh was not run and cannot be) each
//! test says so and passes vacuously; `make test` runs setup.sh first, so
//! there it never skips.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BinaryServer, WAIT, eventually, status_and_body};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The recipe's timeouts: longer than threadchat's ping interval (30 s by
/// default), so that on a quiet connection a ping always crosses nginx
/// before nginx would give the connection up.
const RECIPE_TIMEOUT: &str = "75s";

/// The nginx binary: on PATH, or where Debian puts it (`/usr/sbin`, which a
/// non-root PATH may lack). `None` when it is not installed.
fn nginx_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nginx");
        debian.is_file().then_some(debian)
    })
}

/// Runs a command to its end; panics with its output when it fails.
fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA and a server certificate it signed, for `localhost` and
/// `127.0.0.1`, made with `openssl` in `dir`. Returns the CA's PEM path.
/// ECDSA P-256: quick to make, and what certbot issues by default.
fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = || {
        let mut command = Command::new("openssl");
        command.current_dir(dir);
        command
    };
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(openssl()
        .args(["req", "-x509", "-nodes", "-days", "2"])
        .args(p256)
        .args(["-keyout", "ca.key", "-out", "ca.pem"])
        .args(["-subj", "/CN=threadchat test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(openssl()
        .args(["req", "-nodes"])
        .args(p256)
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=localhost"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n\
         basicConstraints = CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    run(openssl()
        .args(["x509", "-req", "-days", "2", "-in", "server.csr"])
        .args(["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"])
        .args(["-extfile", "server.ext", "-out", "server.pem"]));
    dir.join("ca.pem")
}

/// The recipe, as README shows it, around threadchat at `upstream`, with
/// nginx's read and send timeouts set to `timeout`.
fn recipe(upstream: SocketAddr, timeout: &str) -> String {
    format!(
        "        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Forwarded \"\";
            proxy_read_timeout {timeout};
            proxy_send_timeout {timeout};
        }}
"
    )
}

/// A whole nginx configuration for a test: everything nginx writes goes
/// under `dir`, it listens with TLS on `port` and proxies to `upstream`.
fn nginx_conf(dir: &Path, port: u16, upstream: SocketAddr, timeout: &str) -> String {
    let d = dir.display();
    let location = recipe(upstream, timeout);
    format!(
        "# One process in the foreground, ended by its PID (a master's
# workers would outlive a killed master).
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
{location}    }}
}}
"
    )
}

/// nginx as a child process, ended by its PID when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with the recipe in front of `upstream`, and waits until
    /// it accepts connections. A free port is found by binding port 0 and
    /// letting it go; should another process take it in between, nginx
    /// exits at once and the next port is tried.
    fn start(nginx: &Path, dir: &Path, upstream: SocketAddr, timeout: &str) -> Nginx {
        for _attempt in 0..5 {
            let port = {
                let probe = TcpListener::bind("127.0.0.1:0").expect("find a free port");
                probe.local_addr().unwrap().port()
            };
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(dir, port, upstream, timeout)).unwrap();
            let child = Command::new(nginx)
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx");
            let mut nginx = Nginx {
                child,
                port,
                dir: dir.to_path_buf(),
            };
            let mut exited = false;
            let up = eventually(WAIT, || {
                exited = matches!(nginx.child.try_wait(), Ok(Some(_)));
                exited || TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && !exited {
                return nginx;
            }
            let log = nginx.error_log();
            assert!(
                log.contains("Address already in use"),
                "nginx did not start:\n{log}"
            );
        }
        panic!("nginx found no free port in 5 attempts");
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything one test needs: the directory (removed last), threadchat,
/// nginx in front of it, and a TLS set-up that trusts the test CA only.
struct Deployment {
    nginx: Nginx,
    server: BinaryServer,
    tls: Arc<ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    /// The README's deployment, or `None` (after saying why) without nginx.
    fn start(test: &str) -> Option<Deployment> {
        Self::with(test, RECIPE_TIMEOUT, &[])
    }

    /// The deployment with nginx's timeouts at `timeout` and extra
    /// threadchat flags.
    fn with(test: &str, timeout: &str, flags: &[&str]) -> Option<Deployment> {
        let Some(nginx) = nginx_binary() else {
            eprintln!(
                "{test}: skipped: no nginx on PATH or in /usr/sbin; \
                 `bash tests/nginx/setup.sh` installs Debian's (make test runs it)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = make_certificates(dir.path());
        let db = dir.path().join("threadchat.db");
        let db = db.to_str().expect("a UTF-8 temporary path");
        let mut args = vec!["--trusted-proxy", "127.0.0.1", "--db", db];
        args.extend_from_slice(flags);
        let server = BinaryServer::start_logged(&args);
        let nginx = Nginx::start(&nginx, dir.path(), server.addr, timeout);
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(&ca).expect("read the CA") {
            roots.add(certificate.expect("parse the CA")).unwrap();
        }
        let tls =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        Some(Deployment {
            nginx,
            server,
            tls: Arc::new(tls),
            _dir: dir,
        })
    }

    /// A TLS connection to nginx from `from` (any 127.x.y.z is this
    /// machine), with the handshake done, certificate checked for
    /// `localhost`.
    fn tls_from(&self, from: [u8; 4]) -> StreamOwned<ClientConnection, TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        let local = SocketAddr::from((from, 0));
        socket
            .bind(&local.into())
            .expect("bind the client's address");
        let nginx = SocketAddr::from(([127, 0, 0, 1], self.nginx.port));
        socket.connect(&nginx.into()).expect("connect to nginx");
        let tcp: TcpStream = socket.into();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.set_write_timeout(Some(WAIT)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let session = ClientConnection::new(self.tls.clone(), name).unwrap();
        let mut stream = StreamOwned::new(session, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("TLS handshake with nginx, trusting the test CA");
        }
        stream
    }

    /// A wss:// client in `room`, from 127.0.0.1.
    fn wss(&self, room: &str) -> Wss {
        self.wss_from([127, 0, 0, 1], room, &[])
    }

    /// A wss:// client in `room` from `from`, with extra request headers.
    fn wss_from(&self, from: [u8; 4], room: &str, headers: &[(&'static str, &str)]) -> Wss {
        let url = format!("wss://localhost:{}/r/{room}", self.nginx.port);
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(url).expect("a request");
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, value.parse().expect("a header value"));
        }
        let (ws, response) = tungstenite::client::client(request, self.tls_from(from))
            .expect("WebSocket handshake through nginx");
        assert_eq!(response.status(), 101);
        Wss { ws }
    }

    /// `GET path` over https through nginx: the status and the body.
    fn https_get(&self, path: &str) -> (u16, String) {
        let mut stream = self.tls_from([127, 0, 0, 1]);
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = Vec::new();
        // nginx ends with a TLS close_notify, so the end is a clean EOF.
        stream.read_to_end(&mut response).expect("read the answer");
        status_and_body(&String::from_utf8_lossy(&response))
    }
}

/// A blocking WebSocket client over TLS.
struct Wss {
    ws: WebSocket<StreamOwned<ClientConnection, TcpStream>>,
}

impl Wss {
    fn send_json(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .expect("send");
    }

    /// The next text message as JSON (pings answered and skipped).
    fn recv_json(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no message within {WAIT:?}");
            match self.ws.read() {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).expect("JSON"),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(other) => panic!("expected a text message, got {other:?}"),
                Err(e) => panic!("expected a text message, got error {e}"),
            }
        }
    }

    fn recv_until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self.recv_json();
            if wanted(&message) {
                return message;
            }
        }
    }

    fn login(&mut self, name: &str) {
        self.send_json(json!({"type": "login", "username": name}));
        self.recv_until(|m| m["type"] == "login" && m["user_joined"] == name);
    }

    fn chat(&mut self, text: &str) {
        self.send_json(json!({"type": "chat", "text": text}));
    }
}

#[test]
fn a_login_and_a_chat_go_through_nginx_over_wss() {
    let Some(deployment) = Deployment::start("a_login_and_a_chat_go_through_nginx_over_wss") else {
        return;
    };
    let mut ada = deployment.wss("physics");
    ada.login("ada");
    let mut bob = deployment.wss("physics");
    bob.login("bob");
    ada.recv_until(|m| m["type"] == "login" && m["user_joined"] == "bob");

    ada.chat("hello through nginx");
    for client in [&mut ada, &mut bob] {
        let chat = client.recv_until(|m| m["type"] == "chat");
        assert_eq!(chat["username"], "ada");
        assert_eq!(chat["text"], "hello through nginx");
        assert_eq!(chat["room"], "physics");
    }
    bob.chat("and back");
    let reply = ada.recv_until(|m| m["type"] == "chat");
    assert_eq!(
        (&reply["username"], &reply["text"]),
        (&json!("bob"), &json!("and back"))
    );
}

#[test]
fn the_page_is_served_over_https_through_nginx() {
    let Some(deployment) = Deployment::start("the_page_is_served_over_https_through_nginx") else {
        return;
    };
    let (status, body) = deployment.https_get("/");
    assert_eq!(
        status, 200,
        "GET / through nginx answered {status}:\n{body}"
    );
    assert!(
        body.contains("<title>threadchat</title>"),
        "not the page:\n{body}"
    );
    let (status, _) = deployment.https_get("/client.js");
    assert_eq!(status, 200);
}

#[test]
fn threadchat_sees_the_client_nginx_saw_not_the_one_the_client_wrote() {
    let test = "threadchat_sees_the_client_nginx_saw_not_the_one_the_client_wrote";
    let Some(mut deployment) = Deployment::start(test) else {
        return;
    };
    // The client is 127.0.0.2 (this machine under another address), and
    // claims to be someone else in both forwarding headers. nginx appends
    // the address it saw to X-Forwarded-For and drops Forwarded; threadchat
    // believes nginx (a trusted proxy) for the last hop only.
    let mut liar = deployment.wss_from(
        [127, 0, 0, 2],
        "lobby",
        &[
            ("X-Forwarded-For", "10.9.9.9"),
            ("Forwarded", "for=10.8.8.8"),
        ],
    );
    liar.login("mallory");
    drop(liar);
    let log = deployment.server.stop_and_read_log();
    let opened: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WebSocket open from"))
        .collect();
    assert_eq!(opened.len(), 1, "one WebSocket opened:\n{log}");
    assert!(
        opened[0].contains("WebSocket open from 127.0.0.2 "),
        "threadchat did not name the client nginx saw: {}\n{log}",
        opened[0]
    );
}

#[test]
fn a_quiet_connection_outlives_nginx_timeouts_longer_than_the_ping_interval() {
    // Scaled down from the recipe (30 s pings under 75 s timeouts): pings
    // every second, nginx's timeouts at 3 s, and 5 s of silence.
    let test = "a_quiet_connection_outlives_nginx_timeouts_longer_than_the_ping_interval";
    let Some(deployment) = Deployment::with(test, "3s", &["--ping-interval", "1"]) else {
        return;
    };
    let mut quiet = deployment.wss("lobby");
    quiet.login("quiet");
    let silence = Instant::now() + Duration::from_secs(5);
    while Instant::now() < silence {
        // Reading answers threadchat's pings (tungstenite queues the pong
        // and sends it on the next read or write); only pings may arrive.
        match quiet.ws.read() {
            Ok(Message::Ping(_)) => continue,
            other => panic!("during the silence: {other:?}"),
        }
    }
    quiet.chat("still here");
    let chat = quiet.recv_until(|m| m["type"] == "chat");
    assert_eq!(chat["text"], "still here");
}

#[test]
fn nginx_cuts_a_quiet_connection_when_its_timeout_is_shorter_than_the_ping_interval() {
    // The reason for the timeout lines: with nginx's default 60 s under a
    // ping interval above it, a quiet client is cut. Scaled down: pings
    // every 30 s (the default), nginx's timeouts at 2 s.
    let test = "nginx_cuts_a_quiet_connection_when_its_timeout_is_shorter_than_the_ping_interval";
    let Some(deployment) = Deployment::with(test, "2s", &[]) else {
        return;
    };
    let mut quiet = deployment.wss("lobby");
    quiet.login("quiet");
    let started = Instant::now();
    let ended = loop {
        match quiet.ws.read() {
            Ok(Message::Ping(_)) => continue,
            other => break other,
        }
    };
    let waited = started.elapsed();
    assert!(
        ended.is_err() || matches!(ended, Ok(Message::Close(_))),
        "expected the connection to end, got {ended:?}"
    );
    assert!(
        waited >= Duration::from_millis(1500) && waited < WAIT,
        "cut after {waited:?}, not at nginx's 2 s timeout"
    );
}
