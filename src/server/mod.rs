//! The listener, the accept loop, and stopping it all.
//!
//! The accept loop does as little as possible: it accepts, counts, and hands
//! each socket to a new thread. Reading the HTTP request happens on that
//! thread, never here, so a client that connects and then says nothing
//! (slowloris) delays nobody else.
//!
//! Threads in this design:
//!
//! ```text
//! accept loop ──spawns──▶ reader (one per connection) ──spawns──▶ writer
//!                              │ Event                            ▲ Outbound
//!                              ▼                                  │
//!                          dispatcher ───── Outbox (per client) ──┘
//! ```
//!
//! The design's limit, stated plainly: every connection costs two threads, so
//! the number of connections is capped (`--max-connections`); above the cap
//! the server answers 503 from one small "rejecter" thread instead of
//! spawning more.

mod os_limits;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, error, info, warn};
use socket2::{Domain, Protocol, Socket, Type};

use crate::archivist::{self, Archive, ArchiveConfig, ArchiveError, Job};
use crate::auth::AuthConfig;
use crate::cluster::{self, Cluster, ClusterConfig, ClusterError, ClusterHandles};
use crate::config::{
    Config, EVENT_QUEUE_CAPACITY, MAX_ADMIN_CONNECTIONS, READER_STACK_BYTES, SHUTDOWN_GRACE,
};
use crate::connection;
use crate::dispatcher::{ClusterLink, Dispatcher, Event, Keeper};
use crate::http;
use crate::ids::ConnId;
use crate::metrics::{HandshakeStatus, Metrics};

/// Connections the kernel may hold waiting for `accept` (capped by the
/// system's `net.core.somaxconn`, 4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Over-cap connections waiting for their 503; more than this are dropped
/// without an answer.
const REJECT_QUEUE: usize = 64;

/// How long the rejecter waits for an over-cap client's request before
/// answering anyway.
const REJECT_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// A bound listener and an open history store, not yet serving.
pub struct Server {
    listener: TcpListener,
    config: Config,
    /// The history file, opened and checked; `None` with `--history 0`
    /// or `--redis`.
    archive: Option<Archive>,
    /// With `--redis`: the cluster's connections, checked.
    cluster: Option<Cluster>,
    /// The sign-in check, built from the flags; `None` with sign-in off.
    auth: Option<AuthConfig>,
    /// `--admin-listen`: the operator's endpoints on their own address.
    admin_listener: Option<TcpListener>,
}

/// Why the server could not start; each names its cause.
#[derive(Debug)]
pub enum StartError {
    /// The address could not be resolved or bound.
    Listen(io::Error),
    /// The history database could not be opened (corrupt, locked, …).
    Store(ArchiveError),
    /// The sign-in flags are wrong (an unreadable key, an empty secret, …).
    Auth(String),
    /// `--redis`: Redis could not be reached.
    Cluster(ClusterError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Listen(e) => write!(f, "cannot listen: {e}"),
            StartError::Store(e) => write!(f, "cannot open the history store: {e}"),
            StartError::Auth(e) => write!(f, "cannot set up sign-in: {e}"),
            StartError::Cluster(e) => write!(f, "cannot join the cluster: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server. Dropping it does not stop it; `shutdown` does.
pub struct ServerHandle {
    local_addr: SocketAddr,
    state: Arc<ServerState>,
    events: Sender<Event>,
    accept_loop: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    archivist: Option<JoinHandle<()>>,
    /// With `--redis`: the courier and the listener.
    cluster: Option<ClusterHandles>,
    /// `--admin-listen`'s accept loop and its address.
    admin: Option<(SocketAddr, JoinHandle<()>)>,
}

/// What the accept loop and the connection threads share. Nothing here is
/// chat state: that belongs to the dispatcher alone.
struct ServerState {
    config: Config,
    live: ConnectionCount,
    stopping: AtomicBool,
    /// The archivist's queue, for HTTP requests of older messages; `None`
    /// with history off.
    store: Option<Sender<Job>>,
    /// The sign-in check, shared by every reader; `None` with sign-in off.
    auth: Option<Arc<AuthConfig>>,
    /// This server's counters, shared by every thread (atomics only).
    metrics: Arc<Metrics>,
    /// Set at the end of shutdown: the `--admin-listen` loop stops.
    admin_closing: AtomicBool,
}

impl Server {
    /// Opens the history store (unless `--history 0`), then binds
    /// `config.host` and the resolved port (port 0 picks a free one). The
    /// store comes first so that a bad database stops the server before it
    /// has listened.
    pub fn bind(mut config: Config) -> Result<Server, StartError> {
        let auth = crate::auth::from_config(&config).map_err(StartError::Auth)?;
        let cluster = match &config.redis {
            Some(url) => {
                let settings =
                    ClusterConfig::new(url, &config.cluster, config.retain, config.history_max);
                let cluster = cluster::connect(settings).map_err(StartError::Cluster)?;
                config.node = Some(cluster.node().to_string());
                Some(cluster)
            }
            None => None,
        };
        let archive = if config.history > 0 && cluster.is_none() {
            let store = ArchiveConfig {
                path: config.db.clone(),
                fsync: config.fsync,
                retain: config.retain,
                history_max: config.history_max,
            };
            Some(archivist::open(&store).map_err(StartError::Store)?)
        } else {
            None
        };
        let listener = resolve_and_listen(&config).map_err(StartError::Listen)?;
        let admin_listener = match &config.admin_listen {
            Some(addr) => Some(listen_on(addr).map_err(|e| {
                StartError::Listen(io::Error::new(
                    e.kind(),
                    format!("--admin-listen {addr}: {e}"),
                ))
            })?),
            None => None,
        };
        Ok(Server {
            listener,
            config,
            archive,
            cluster,
            auth,
            admin_listener,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts the dispatcher and the accept loop on their own threads.
    pub fn spawn(mut self) -> io::Result<ServerHandle> {
        let local_addr = self.listener.local_addr()?;
        let (ceiling, why) = os_limits::connection_ceiling();
        if self.config.max_connections > ceiling {
            warn!(
                "serving at most {ceiling} connections, not {}: {why}",
                self.config.max_connections
            );
            self.config.max_connections = ceiling;
        }
        let (events, receiver) = crossbeam_channel::bounded(EVENT_QUEUE_CAPACITY);
        let metrics = Arc::new(Metrics::new());
        // The archivist's queue is unbounded so that the dispatcher never
        // waits on it (it bounds what it hands over itself: MAX_UNARCHIVED).
        let (store, archivist) = match self.archive {
            Some(archive) => {
                let (jobs, queue) = crossbeam_channel::unbounded();
                let archivist = archive.spawn(queue, events.clone(), Some(metrics.clone()))?;
                (Some(jobs), Some(archivist))
            }
            None => (None, None),
        };
        // With `--redis` the courier takes the archivist's jobs; its queues,
        // like the archivist's, are unbounded for the same reason.
        let (dispatcher, store, cluster) = match self.cluster {
            Some(cluster) => {
                let (jobs, job_queue) = crossbeam_channel::unbounded();
                let (work, work_queue) = crossbeam_channel::unbounded();
                let (subscriptions, subscription_queue) = crossbeam_channel::unbounded();
                let handles = cluster.spawn(
                    job_queue,
                    work_queue,
                    subscription_queue,
                    events.clone(),
                    metrics.clone(),
                )?;
                let link = ClusterLink {
                    work,
                    subscriptions,
                };
                let keeper = Keeper::redis(jobs.clone(), link);
                let dispatcher = Dispatcher::new(&self.config, keeper, metrics.clone());
                (dispatcher, Some(jobs), Some(handles))
            }
            None => (
                Dispatcher::new(
                    &self.config,
                    store.clone().map_or(Keeper::Nobody, Keeper::archivist),
                    metrics.clone(),
                ),
                store,
                None,
            ),
        };
        let dispatcher = thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || supervise_dispatcher(dispatcher, receiver))?;
        let state = Arc::new(ServerState {
            config: self.config,
            live: ConnectionCount::default(),
            stopping: AtomicBool::new(false),
            store,
            auth: self.auth.map(Arc::new),
            metrics: metrics.clone(),
            admin_closing: AtomicBool::new(false),
        });
        let rejecter = spawn_rejecter(metrics)?;
        let accept_loop = {
            let state = state.clone();
            let events = events.clone();
            let listener = self.listener;
            thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept_loop(listener, state, events, rejecter))?
        };
        let admin = match self.admin_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let state = state.clone();
                let events = events.clone();
                let handle = thread::Builder::new()
                    .name("admin-accept".into())
                    .spawn(move || admin_accept_loop(listener, state, events))?;
                info!("operator endpoints on http://{addr}/metrics and http://{addr}/inside");
                Some((addr, handle))
            }
            None => None,
        };
        Ok(ServerHandle {
            admin,
            local_addr,
            state,
            events,
            accept_loop,
            dispatcher,
            archivist,
            cluster,
        })
    }
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open right now (handshaking, chatting or closing).
    pub fn connections(&self) -> usize {
        self.state.live.get()
    }

    /// Where `--admin-listen` serves, if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// This server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Stops gracefully: no new connections, a close frame (1001, going away)
    /// to every client, then waits for the connection threads to end. Clients
    /// that have not gone after `SHUTDOWN_GRACE` have their sockets shut down.
    /// Returns whether every connection ended in time.
    pub fn shutdown(self) -> bool {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.metrics.health().set_stopping(); // `/healthz` says 503 from now

        // `accept` blocks; a connection of our own wakes it up to see the flag.
        let _ = TcpStream::connect(wake_address(self.local_addr));
        let _ = self.accept_loop.join();

        let _ = self.events.send(Event::Shutdown);
        let mut done = self.state.live.wait_for_zero(SHUTDOWN_GRACE);
        if !done {
            warn!(
                "{} connections still open after {SHUTDOWN_GRACE:?}; closing them",
                self.state.live.get()
            );
            let _ = self.events.send(Event::ForceClose);
            done = self.state.live.wait_for_zero(Duration::from_millis(400));
        }
        // The operator's address answered through the grace period (its
        // `/healthz` saying 503, so a load balancer looks elsewhere).
        if let Some((addr, admin)) = self.admin {
            self.state.admin_closing.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(wake_address(addr));
            let _ = admin.join();
        }
        // Every reader is gone: the dispatcher may stop. It drops its
        // handle on the archivist's queue as it returns, and with ours (in
        // `state`) gone too the archivist commits what it has and ends.
        let _ = self.events.send(Event::Stop);
        drop(self.events);
        drop(self.state);
        if done {
            let _ = self.dispatcher.join();
            if let Some(archivist) = self.archivist {
                let _ = archivist.join();
            }
            if let Some(cluster) = self.cluster {
                let _ = cluster.courier.join();
                let _ = cluster.listener.join();
            }
        }
        info!("server stopped");
        done
    }
}

/// Exit status when the dispatcher has died (EX_SOFTWARE).
const DISPATCHER_DIED: i32 = 70;

/// Runs the dispatcher, and if it ever panics, ends the process.
///
/// The dispatcher is the one thread the chat cannot live without: readers
/// and writers would go on, but nobody would be routed anything. A process
/// that stays up with a dead chat is the worst kind of failure, since a
/// supervisor (systemd, a container runtime) sees it running and leaves it
/// be. So its death is the process's: the cause is logged and the process
/// exits non-zero at once, for the supervisor to restart it. (Every chat
/// anyone saw is in the history file by then.)
fn supervise_dispatcher(dispatcher: Dispatcher, events: crossbeam_channel::Receiver<Event>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatcher.run(events);
    }));
    if let Err(panic) = outcome {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        error!("the dispatcher died ({why}); exiting so that a supervisor restarts the server");
        std::process::exit(DISPATCHER_DIED);
    }
}

/// Resolves the configured host and port and listens there.
fn resolve_and_listen(config: &Config) -> io::Result<TcpListener> {
    let port = config.resolved_port().map_err(io::Error::other)?;
    listen_on((config.host.as_str(), port))
}

/// Resolves an address and listens there.
fn listen_on(addr: impl ToSocketAddrs + std::fmt::Debug) -> io::Result<TcpListener> {
    let resolved = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr:?} resolves to no address")))?;
    listen(resolved)
}

/// The accept loop of `--admin-listen`: a thread per operator request,
/// at most `MAX_ADMIN_CONNECTIONS` at once, serving only the operator's
/// endpoints. Chat connections never come here.
fn admin_accept_loop(listener: TcpListener, state: Arc<ServerState>, events: Sender<Event>) {
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in listener.incoming() {
        if state.admin_closing.load(Ordering::SeqCst) {
            break;
        }
        let Ok(socket) = stream else { continue };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_ADMIN_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: an operator's scraper retries
        }
        let (state, events, busy) = (state.clone(), events.clone(), busy.clone());
        let spawned = thread::Builder::new()
            .name("admin".into())
            .stack_size(READER_STACK_BYTES)
            .spawn(move || {
                let counter = state.clone();
                let services = connection::Services {
                    events,
                    store: state.store.clone(),
                    auth: None,
                    metrics: state.metrics.clone(),
                    connections: Box::new(move || counter.live.get()),
                };
                let closing = || state.admin_closing.load(Ordering::SeqCst);
                connection::serve_admin(socket, &state.config, &services, closing);
                busy.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            error!("cannot start a thread for an operator request: {e}");
        }
    }
    debug!("admin accept loop stopped");
}

/// A listening socket, made with `socket2` rather than `TcpListener::bind`
/// for two settings std does not offer: a backlog long enough for a
/// thousand clients connecting at once (std's 128 overflows, and each
/// overflowed client waits a second to try again), and `SO_REUSEADDR`, so a
/// restarted server can bind its port while old connections linger in
/// TIME_WAIT.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// `0.0.0.0` and `::` are not addresses one can connect to.
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => addr.set_ip([127, 0, 0, 1].into()),
            SocketAddr::V6(_) => addr.set_ip(std::net::Ipv6Addr::LOCALHOST.into()),
        }
    }
    addr
}

fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    events: Sender<Event>,
    rejecter: Sender<TcpStream>,
) {
    let mut next_id: ConnId = 0;
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        let socket = match stream {
            Ok(socket) => socket,
            Err(e) => {
                // Out of file descriptors, mostly: back off briefly rather
                // than spin, and keep serving the connections we have.
                error!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(slot) = state.try_acquire_slot() else {
            warn!(
                "connection refused: at the cap of {}",
                state.config.max_connections
            );
            if let Err(TrySendError::Full(socket)) = rejecter.try_send(socket) {
                drop(socket);
            }
            continue;
        };
        next_id += 1;
        let id = next_id;
        let thread_state = state.clone();
        let thread_events = events.clone();
        let spawned = thread::Builder::new()
            .name(format!("reader-{id}"))
            .stack_size(READER_STACK_BYTES)
            .spawn(move || {
                let _slot = slot; // released when this thread ends, however
                let stopping = || thread_state.stopping.load(Ordering::SeqCst);
                let counter = thread_state.clone();
                let services = connection::Services {
                    events: thread_events,
                    store: thread_state.store.clone(),
                    auth: thread_state.auth.clone(),
                    metrics: thread_state.metrics.clone(),
                    connections: Box::new(move || counter.live.get()),
                };
                connection::serve(id, socket, &thread_state.config, services, stopping);
            });
        if let Err(e) = spawned {
            // The slot and socket went down with the closure: the client
            // sees its connection close.
            error!("cannot start a thread for a connection: {e}");
        }
    }
    debug!("accept loop stopped");
}

/// One thread that answers over-cap connections with 503, so that refusing
/// costs no thread per connection.
fn spawn_rejecter(metrics: Arc<Metrics>) -> io::Result<Sender<TcpStream>> {
    let (sender, receiver) = crossbeam_channel::bounded::<TcpStream>(REJECT_QUEUE);
    thread::Builder::new()
        .name("rejecter".into())
        .spawn(move || {
            for mut socket in receiver {
                // Read (some of) the request first: closing a socket with
                // unread data resets it, and the client might miss the 503.
                let _ = socket.set_read_timeout(Some(REJECT_READ_TIMEOUT));
                let _ = socket.set_write_timeout(Some(REJECT_READ_TIMEOUT));
                let mut request = [0u8; 2048];
                let _ = socket.read(&mut request);
                metrics.handshake_refused(HandshakeStatus::Unavailable);
                let _ = socket.write_all(&http::status_response(
                    "503 Service Unavailable",
                    "the server is full; try again later",
                ));
                http::linger_close(&socket);
            }
        })?;
    Ok(sender)
}

/// Counts live connections; the accept loop checks the cap with it and
/// shutdown waits on it. A `Mutex` and `Condvar` rather than an atomic,
/// because shutdown needs to *wait* for zero, not poll for it.
#[derive(Default)]
struct ConnectionCount {
    count: Mutex<usize>,
    changed: Condvar,
}

/// One live connection's place under the cap; given back on drop.
struct Slot(Arc<ServerState>);

impl ConnectionCount {
    fn get(&self) -> usize {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_for_zero(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = match self.changed.wait_timeout(count, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

impl ServerState {
    fn try_acquire_slot(self: &Arc<Self>) -> Option<Slot> {
        let mut count = self.live.count.lock().unwrap_or_else(|e| e.into_inner());
        if *count >= self.config.max_connections {
            return None;
        }
        *count += 1;
        Some(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let live = &self.0.live;
        let mut count = live.count.lock().unwrap_or_else(|e| e.into_inner());
        *count -= 1;
        live.changed.notify_all();
    }
}
