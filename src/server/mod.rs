//! The server: the listening sockets, the threads that accept on them, and
//! stopping it all. This file is the wiring: `Server::bind` opens everything
//! that can fail (the sign-in check, the cluster's connections, the history
//! file, the sockets) before anything runs, and `Server::spawn` starts the
//! threads and hands back a `ServerHandle` to stop them with.
//!
//! The threads, and what passes between them:
//!
//! ```text
//! accept loop ──spawns──▶ reader (one per connection) ──spawns──▶ writer
//!     │ over a cap             │ Event                            ▲ Outbound
//!     ▼                        ▼                                  │
//!  rejecter (503, 429)     dispatcher ───── Outbox (per client) ──┘
//!                            │     ▲
//!                        Job │     │ Event (committed, loaded, heard)
//!                            ▼     │
//!            archivist, or with --redis: courier ─▶ Redis ─▶ listener
//!
//! admin accept loop ──spawns──▶ admin request (one per operator request)
//! ```
//!
//! Every thread the server starts, by the name it carries, and where it lives:
//!
//! ```text
//! thread             name            how many               file (under src/)
//! accept loop        accept          one                    server/accept.rs
//! reader             reader-<conn>   one per connection     connection/reader.rs (its
//!                                                           front door: connection/)
//! spare              spare           former readers, a few  server/spares.rs
//! writer             writer-<conn>   one while a client is  connection/writer.rs
//!                                    behind (outbox/turn.rs)
//! dispatcher         dispatcher      one                    dispatcher/, run by
//!                                                           server/shutdown.rs's
//!                                                           supervise_dispatcher
//! archivist          archivist       one, with history and  archivist/
//!                                    without --redis
//! courier            redis-courier   one, with --redis      cluster/courier/
//! listener           redis-listener  one, with --redis      cluster/listener.rs
//! rejecter           rejecter        one                    server/rejecter.rs
//! admin accept loop  admin-accept    one, --admin-listen    server/admin_listen.rs
//! admin request      admin           one per request, at    server/admin_listen.rs
//!                                    most MAX_ADMIN_CONNECTIONS
//! ```
//!
//! One role a file: `listen.rs` (the sockets), `accept.rs` (the loop, the
//! caps), `spares.rs` (threads kept), `rejecter.rs`, `admin_listen.rs`,
//! `handle.rs` (address, counts, certificate reload), `shutdown.rs` (and the
//! process's end if the dispatcher dies), `os_limits.rs` (the OS's limits).
//!
//! The design's limit, stated plainly: every connection costs a thread (two
//! while it is behind), so the number of connections is capped
//! (`--max-connections`), and so is one client address's share
//! (`--max-connections-per-ip`); above a cap the server answers 503 or 429
//! from one small "rejecter" thread instead of spawning more.

mod accept;
mod admin_listen;
mod handle;
mod listen;
mod os_limits;
mod rejecter;
mod shutdown;
mod spares;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::{self, JoinHandle};

use crossbeam_channel::Sender;
use log::{info, warn};

use crate::archivist::{self, Archive, ArchiveConfig, ArchiveError, Read};
use crate::auth::{AuthConfig, OperatorToken};
use crate::cluster::{self, Cluster, ClusterConfig, ClusterError, ClusterHandles};
use crate::config::{Config, EVENT_QUEUE_CAPACITY};
use crate::connection;
use crate::dispatcher::{ClusterLink, Dispatcher, Event, Keeper};
use crate::metrics::Metrics;
use crate::tls::{self, Certificates};
use accept::ConnectionCount;

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
    /// `--tls-cert` and `--tls-key`, checked; `None` for plain http.
    tls: Option<Certificates>,
    /// `--admin-token-file`: the moderation API's operator token.
    operator: Option<OperatorToken>,
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
    /// Flags that must not go together.
    Conflict(&'static str),
    /// `--tls-cert`/`--tls-key`: the text names the file and the cause.
    Tls(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Listen(e) => write!(f, "cannot listen: {e}"),
            StartError::Store(e) => write!(f, "cannot open the history store: {e}"),
            StartError::Auth(e) => write!(f, "cannot set up sign-in: {e}"),
            StartError::Cluster(e) => write!(f, "cannot join the cluster: {e}"),
            StartError::Conflict(e) => write!(f, "cannot start: {e}"),
            StartError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why `--conformance-echo` and sign-in are refused together.
pub const ECHO_WITH_SIGN_IN: &str = "--conformance-echo is for testing and answers without a token; \
     it cannot be used with sign-in (--jwt-secret, --jwt-secret-file, --jwt-public-key or \
     $THREADCHAT_JWT_SECRET)";

/// A running server. Dropping it does not stop it; `shutdown.rs` does.
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
    /// Connections open right now, in all and per client address, under
    /// the caps (`accept.rs`).
    live: ConnectionCount,
    /// Set first thing in shutdown: the accept loop stops (and with it the
    /// spares' wait), and every reader sees it (`serve`'s `shutting_down`).
    stopping: AtomicBool,
    /// The history's queue of reads (the archivist's, or with `--redis` the
    /// courier's), for HTTP requests of older messages and `/readyz`;
    /// bounded, and apart from the chats' jobs. `None` with history off and
    /// no `--redis`.
    store: Option<Sender<Read>>,
    /// The sign-in check, shared by every reader; `None` with sign-in off.
    auth: Option<Arc<AuthConfig>>,
    /// This server's counters, shared by every thread (atomics only).
    metrics: Arc<Metrics>,
    /// Set at the end of shutdown: the `--admin-listen` loop stops.
    admin_closing: AtomicBool,
    /// With `--tls-cert`: the pair new handshakes use, swapped on reload;
    /// shared with the rejecter, which answers over TLS too.
    tls: Option<Arc<Certificates>>,
    /// `--admin-token-file`: the moderation API's operator token.
    operator: Option<Arc<OperatorToken>>,
}

impl ServerState {
    /// What a connection's thread is given to reach the threads that own
    /// the server's state (see `connection::Services`): built here alone,
    /// for a chat connection and an operator's request alike.
    fn services(self: &Arc<Self>, events: Sender<Event>) -> connection::Services {
        let counter = self.clone();
        connection::Services {
            events,
            store: self.store.clone(),
            auth: self.auth.clone(),
            metrics: self.metrics.clone(),
            connections: Box::new(move || counter.live.get()),
            tls: self.tls.as_deref().map(Certificates::current),
            operator: self.operator.clone(),
        }
    }
}

impl Server {
    /// Opens the history store (unless `--history 0`), then binds
    /// `config.host` and the resolved port (port 0 picks a free one). The
    /// store comes first so that a bad database stops the server before it
    /// has listened.
    pub fn bind(mut config: Config) -> Result<Server, StartError> {
        let auth = crate::auth::from_config(&config).map_err(StartError::Auth)?;
        let tls = tls::from_config(&config).map_err(StartError::Tls)?;
        let operator = config.admin_token_file.as_deref();
        let operator = operator.map(OperatorToken::from_file).transpose();
        let operator = operator.map_err(StartError::Auth)?;
        if auth.is_some() && config.conformance_echo.is_some() {
            // The echo answers anyone, token or not: a server that signs
            // users in is one that faces people it must keep out.
            return Err(StartError::Conflict(ECHO_WITH_SIGN_IN));
        }
        let cluster = match &config.redis {
            Some(url) => {
                let settings = ClusterConfig::new(
                    url,
                    &config.cluster,
                    config.retain,
                    config.history_max,
                    config.retain_total,
                );
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
                retain_total: config.retain_total,
                history_max: config.history_max,
            };
            Some(archivist::open(&store).map_err(StartError::Store)?)
        } else {
            None
        };
        let listener = listen::resolve_and_listen(&config).map_err(StartError::Listen)?;
        let admin_listener = match &config.admin_listen {
            Some(addr) => Some(listen::listen_on(addr).map_err(|e| {
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
            tls,
            operator,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts the dispatcher and the accept loop on their own threads.
    pub fn spawn(mut self) -> io::Result<ServerHandle> {
        let local_addr = self.listener.local_addr()?;
        let ceiling = os_limits::ceiling();
        if self.config.max_connections > ceiling.connections {
            warn!(
                "serving at most {} connections, not {}: {}",
                ceiling.connections, self.config.max_connections, ceiling.why
            );
            self.config.max_connections = ceiling.connections;
        }
        // Half the threads one reader per connection leaves are for writers;
        // the other half covers what thread starts and ends leave mapped
        // for a while (glibc keeps ended threads' stacks for reuse).
        self.config.max_writers =
            (ceiling.threads.saturating_sub(self.config.max_connections) / 2).max(1);
        if let Some(path) = &self.config.conformance_echo {
            warn!(
                "ws://{local_addr}{path} sends every message back (--conformance-echo): for testing only"
            );
        }
        let (events, receiver) = crossbeam_channel::bounded(EVENT_QUEUE_CAPACITY);
        let metrics = Arc::new(Metrics::new());
        if let Some(tls) = &self.tls {
            metrics.set_tls_cert_expiry(tls.expires());
        }
        // The archivist's queue of jobs is unbounded so that the dispatcher
        // never waits on it (it bounds what it hands over itself:
        // MAX_UNARCHIVED); HTTP requests' reads have a bounded queue of
        // their own (`archivist::read_queue`), so they never queue in front
        // of the chats.
        let (jobs, reads, archivist) = match self.archive {
            Some(archive) => {
                let (jobs, queue) = crossbeam_channel::unbounded();
                let (reads, read_queue) = archivist::read_queue();
                let archivist =
                    archive.spawn(queue, read_queue, events.clone(), Some(metrics.clone()))?;
                (Some(jobs), Some(reads), Some(archivist))
            }
            None => (None, None, None),
        };
        // With `--redis` the courier takes the jobs and reads, its queues
        // unbounded like the archivist's for the same reason, but the reads.
        let (dispatcher, store, cluster) = match self.cluster {
            Some(cluster) => {
                let (jobs, job_queue) = crossbeam_channel::unbounded();
                let (reads, read_queue) = archivist::read_queue();
                let (work, work_queue) = crossbeam_channel::unbounded();
                let (subscriptions, subscription_queue) = crossbeam_channel::unbounded();
                let handles = cluster.spawn(
                    job_queue,
                    read_queue,
                    work_queue,
                    subscription_queue,
                    events.clone(),
                    metrics.clone(),
                )?;
                let link = ClusterLink {
                    work,
                    subscriptions,
                };
                let keeper = Keeper::redis(jobs, link);
                let dispatcher = Dispatcher::new(&self.config, keeper, metrics.clone());
                (dispatcher, Some(reads), Some(handles))
            }
            None => (
                Dispatcher::new(
                    &self.config,
                    jobs.map_or(Keeper::Nobody, Keeper::archivist),
                    metrics.clone(),
                ),
                reads,
                None,
            ),
        };
        // With sign-in on, sockets without a token hold no room.
        let dispatcher = match self.auth {
            Some(_) => dispatcher.with_sign_in(),
            None => dispatcher,
        };
        let dispatcher = thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || shutdown::supervise_dispatcher(dispatcher, receiver))?;
        let state = Arc::new(ServerState {
            config: self.config,
            live: ConnectionCount::default(),
            stopping: AtomicBool::new(false),
            store,
            auth: self.auth.map(Arc::new),
            metrics: metrics.clone(),
            admin_closing: AtomicBool::new(false),
            tls: self.tls.map(Arc::new),
            operator: self.operator.map(Arc::new),
        });
        let rejecter = {
            let tls = state.tls.clone();
            rejecter::spawn(metrics, move || tls.as_deref().map(Certificates::current))?
        };
        let accept_loop = {
            let state = state.clone();
            let events = events.clone();
            let listener = self.listener;
            thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept::accept_loop(listener, state, events, rejecter))?
        };
        let admin = match self.admin_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let state = state.clone();
                let events = events.clone();
                let handle = thread::Builder::new()
                    .name("admin-accept".into())
                    .spawn(move || admin_listen::admin_accept_loop(listener, state, events))?;
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
