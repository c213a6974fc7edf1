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

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, error, info, warn};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, EVENT_QUEUE_CAPACITY, READER_STACK_BYTES, SHUTDOWN_GRACE};
use crate::connection;
use crate::dispatcher::{ConnId, Dispatcher, Event};
use crate::http;
use crate::os_limits;

/// Connections the kernel may hold waiting for `accept` (capped by the
/// system's `net.core.somaxconn`, 4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Over-cap connections waiting for their 503; more than this are dropped
/// without an answer.
const REJECT_QUEUE: usize = 64;

/// How long the rejecter waits for an over-cap client's request before
/// answering anyway.
const REJECT_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// A bound listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    config: Config,
}

/// A running server. Dropping it does not stop it; `shutdown` does.
pub struct ServerHandle {
    local_addr: SocketAddr,
    state: Arc<ServerState>,
    events: Sender<Event>,
    accept_loop: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

/// What the accept loop and the connection threads share. Nothing here is
/// chat state: that belongs to the dispatcher alone.
struct ServerState {
    config: Config,
    live: ConnectionCount,
    stopping: AtomicBool,
}

impl Server {
    /// Binds `config.host` and the resolved port (port 0 picks a free one).
    pub fn bind(config: Config) -> io::Result<Server> {
        let port = config.resolved_port().map_err(io::Error::other)?;
        let addr = (config.host.as_str(), port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} resolves to no address", config.host)))?;
        let listener = listen(addr)?;
        Ok(Server { listener, config })
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
        let dispatcher = Dispatcher::new(&self.config);
        let dispatcher = thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || dispatcher.run(receiver))?;
        let state = Arc::new(ServerState {
            config: self.config,
            live: ConnectionCount::default(),
            stopping: AtomicBool::new(false),
        });
        let rejecter = spawn_rejecter()?;
        let accept_loop = {
            let state = state.clone();
            let events = events.clone();
            let listener = self.listener;
            thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept_loop(listener, state, events, rejecter))?
        };
        Ok(ServerHandle {
            local_addr,
            state,
            events,
            accept_loop,
            dispatcher,
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

    /// Stops gracefully: no new connections, a close frame (1001, going away)
    /// to every client, then waits for the connection threads to end. Clients
    /// that have not gone after `SHUTDOWN_GRACE` have their sockets shut down.
    /// Returns whether every connection ended in time.
    pub fn shutdown(self) -> bool {
        self.state.stopping.store(true, Ordering::SeqCst);
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
        // With the accept loop and every reader gone, this is the last
        // sender: dropping it ends the dispatcher.
        drop(self.events);
        if done {
            let _ = self.dispatcher.join();
        }
        info!("server stopped");
        done
    }
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
                connection::serve(id, socket, &thread_state.config, thread_events, stopping);
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
fn spawn_rejecter() -> io::Result<Sender<TcpStream>> {
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
