//! Every number the server runs by, in one place.
//!
//! Each limit is a named constant with the reason it has the value it has, and
//! `Config` carries the ones an operator may change from the command line.
//! The README's table of defaults is checked against these constants by
//! `tests/readme_defaults.rs`, so the two cannot drift apart.

use std::time::Duration;

use std::path::PathBuf;

use clap::Parser;

use crate::auth::{self, AuthConfig, Secret};

/// Port used when neither `--port` nor `PORT`/`WS_PORT` says otherwise; the
/// tutorial's client connects to `ws://localhost:8081`.
pub const DEFAULT_PORT: u16 = 8081;

/// Largest WebSocket message (and frame) a client may send. Chat lines are
/// short; 64 KiB leaves room for any honest message and stops a client from
/// making the server buffer megabytes. Larger messages close with 1009.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest chat text, in characters, that is relayed to everyone.
pub const DEFAULT_MAX_CHAT_CHARS: usize = 2000;

/// Longest username, in characters, after trimming.
pub const MAX_USERNAME_CHARS: usize = 32;

/// Messages per second a client may send; the burst is twice this. High
/// enough for any person typing, low enough that one script cannot flood a
/// room. `0` turns the limit off (for benchmarks).
pub const DEFAULT_RATE_LIMIT: u32 = 20;

/// How many messages over the rate limit a client may send, in a row of
/// refusals without the bucket refilling in between, before the server stops
/// answering with errors and closes the connection with 1008.
pub const RATE_LIMIT_STRIKES: u32 = 50;

/// Messages that may wait in one client's outbound queue. A client this far
/// behind is not reading; it is disconnected rather than slowing anyone down.
pub const DEFAULT_OUTBOUND_MESSAGES: usize = 4096;

/// Bytes that may wait in one client's outbound queue (the same rule as
/// above, for large frames such as `active_users` lists in a big room).
pub const DEFAULT_OUTBOUND_BYTES: usize = 4 * 1024 * 1024;

/// Time a new connection has to send its complete HTTP request. Protects the
/// server from connections that open and then dribble (slowloris).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client silent for this long is sent a ping, so that a live but quiet
/// client answers with a pong.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// A client silent for this long (no message, no pong) is considered dead.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Time a writer may stay blocked with no byte taken by the client before
/// it gives the connection up as dead.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; past this, new ones get HTTP 503. Each
/// connection costs two threads and one file descriptor, and this machine
/// allows 20,000 descriptors per process and 32,768 threads in all.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Rooms that may exist at once. A room costs a little memory and nothing
/// while quiet, but each is a name someone chose: without a bound, a script
/// opening connections to `/r/a1`, `/r/a2`, … could grow the server's state
/// without limit. Past it, a handshake for a new room gets HTTP 503.
pub const DEFAULT_MAX_ROOMS: usize = 1_000;

/// Chats a newcomer to a room is shown (`--history`); `0` turns history off
/// and the server keeps nothing. Fifty fill a screen or two.
pub const DEFAULT_HISTORY: usize = 50;

/// Most chats sent to a client that reconnects with `since`: enough for a
/// minute's gap in a busy room, and a bound on the size of one message.
pub const DEFAULT_HISTORY_MAX: usize = 1_000;

/// Chats kept per room in the store (`--retain`); older ones are deleted in
/// the background. Ten thousand is days of a class's chat, a few MB.
pub const DEFAULT_RETAIN: usize = 10_000;

/// The history file, in the working directory, so `make run` needs nothing.
pub const DEFAULT_DB: &str = "threadchat.db";

/// Chats each room keeps in memory (at least `--history`), so that a join,
/// and a reconnect after a short gap, costs no query. A few hundred bytes
/// each, per room.
pub const RECENT_PER_ROOM: usize = 256;

/// Chats handed to the archivist and not yet committed, past which new chats
/// are refused ("history store is behind") rather than queued without end
/// while the disk is stuck.
pub const MAX_UNARCHIVED: usize = 64 * 1024;

/// Longest a handshake waits for the dispatcher to admit it to its room.
/// The dispatcher answers in microseconds; this only bounds a server so
/// overloaded that the client is better told 503 than kept waiting.
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest an HTTP request waits for the thread that owns its answer (the
/// dispatcher for `/api/rooms`).
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// Time graceful shutdown gives clients to receive their close frame before
/// their sockets are shut down regardless.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Longest HTTP request head (request line plus headers) accepted.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;

/// Most headers in one request.
pub const MAX_REQUEST_HEADERS: usize = 32;

/// tungstenite's read buffer per connection. Its default is 128 KiB, which for
/// 10,000 idle connections would be over a gigabyte; chat frames are a few
/// hundred bytes, and the buffer grows on demand for a larger message (up to
/// the message limit). Measured: an idle connection costs about 30 KiB in
/// all with a 4 KiB buffer; 2 KiB leaves room under the 32 KiB goal.
pub const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Stack of a reader thread: it parses JSON (serde_json bounds nesting at 128
/// levels) and runs tungstenite. Only the pages touched count as memory.
pub const READER_STACK_BYTES: usize = 256 * 1024;

/// Stack of a writer thread: it only moves byte buffers to the socket.
pub const WRITER_STACK_BYTES: usize = 64 * 1024;

/// Events from all readers to the dispatcher that may be in flight at once.
/// A full channel makes readers wait, which slows floods at their source.
pub const EVENT_QUEUE_CAPACITY: usize = 16 * 1024;

/// Largest batch of broadcast frames the dispatcher gathers before queueing
/// it for everyone (see `room.rs`). `0` queues every broadcast on its
/// own; the benchmarks use that to show what batching buys.
pub const DEFAULT_BROADCAST_BATCH_BYTES: usize = 64 * 1024;

/// Most events the dispatcher handles in one batch, so that a steady stream
/// of events cannot postpone a flush indefinitely.
pub const MAX_EVENTS_PER_BATCH: usize = 256;

/// Most queued buffers the writer gathers into one `writev` call. `1` writes
/// each on its own (for the benchmarks' comparison).
pub const DEFAULT_WRITE_BATCH: usize = 512;

/// How often a writer blocked on a full socket checks whether its client has
/// been disconnected meanwhile.
pub const WRITE_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Most bytes of an unrecognised message quoted in the log.
pub const LOG_PAYLOAD_CHARS: usize = 200;

/// Most chats one page of the HTTP history endpoint holds, so one request
/// costs a bounded amount of reading and encoding.
pub const HISTORY_PAGE_MAX: usize = 200;

/// Most jobs the archivist takes into one transaction (group commit). A
/// commit costs the same for 1 row as for 1000, so batching is what makes
/// the database keep up; the bound keeps one transaction, and the wait of
/// the chats in it, short.
pub const ARCHIVE_JOBS_PER_TRANSACTION: usize = 1024;

/// A pause in new chats this long counts as idle, and the archivist then
/// does its housekeeping (deletes chats beyond the retention limit, then
/// checkpoints the write-ahead log): nobody waits for it then.
pub const ARCHIVE_IDLE: Duration = Duration::from_millis(500);

/// Under unbroken load the archivist still deletes old chats after this many
/// commits, so the file cannot grow without bound while the server is busy.
pub const RETENTION_EVERY_COMMITS: u64 = 64;

/// Most rows one retention pass deletes (one transaction): a few
/// milliseconds of work, so chats arriving meanwhile wait little.
pub const RETENTION_ROWS_PER_PASS: u64 = 1000;

/// Size the write-ahead log is cut back to after a checkpoint, so that a
/// burst of chats does not leave a large file behind for good.
pub const WAL_SIZE_LIMIT_BYTES: i64 = 16 * 1024 * 1024;

/// Pages (4 KiB) the write-ahead log may hold before SQLite checkpoints it
/// inside a commit. A checkpoint syncs the file to disk, which stalls every
/// chat waiting for that commit by 10-25 ms here; the archivist therefore
/// checkpoints when the chat is idle (`ARCHIVE_IDLE`), and this bound (the
/// 16 MiB of `WAL_SIZE_LIMIT_BYTES`) only acts under load that never pauses,
/// four times less often than SQLite's default of 1,000 pages (every 1-2 s
/// at full speed). A crash replays at most this much log at start-up.
pub const WAL_CHECKPOINT_PAGES: i64 = 4096;

/// The same bound with `--fsync`: SQLite's default. There every commit
/// waits for the disk anyway, and that wait is shorter in a log that is
/// reused from its start after a checkpoint than in one that keeps growing
/// (a sync of a growing file writes its size too): commits took about 35%
/// longer with the larger bound in the full-speed bench.
pub const WAL_CHECKPOINT_PAGES_FSYNC: i64 = 1000;

/// A node's lease in the cluster (`--redis`): a node that has not renewed
/// it for this long is taken for dead, and its users are announced gone.
/// Long enough to ride out a slow Redis or a paused process; with
/// `REDIS_LEASE_RENEW` it makes a dead node's users leave within 15 s.
pub const REDIS_LEASE: Duration = Duration::from_secs(10);

/// How often a node renews its lease and looks for lapsed ones: a fifth of
/// the lease, so four renewals can go missing before it lapses.
pub const REDIS_LEASE_RENEW: Duration = Duration::from_secs(2);

/// Longest one Redis command may take before the connection is taken for
/// broken (and reconnected): a loopback or LAN round trip is well under a
/// millisecond, so this is only ever reached by a Redis that is gone.
pub const REDIS_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// First and longest wait between reconnection attempts while Redis is
/// away (doubling in between): quick to notice its return, without
/// hammering a Redis that is restarting.
pub const REDIS_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const REDIS_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long the listener waits on Redis before it looks at the
/// dispatcher's subscription requests: the most a new room waits to be
/// heard, and 20 idle wake-ups a second.
pub const REDIS_LISTEN_POLL: Duration = Duration::from_millis(50);

/// How long the listener may hear nothing before it sends Redis a PING
/// (answered within `REDIS_COMMAND_TIMEOUT`, or the connection is taken for
/// broken). A subscribed connection only ever reads, so without it a path
/// that died silently (a firewall that forgot the connection, Redis gone
/// without a reset) would look like a quiet room forever; with it, such a
/// connection is replaced within about 4 s. One round trip per quiet
/// interval is all it costs.
pub const REDIS_LISTEN_PING: Duration = Duration::from_secs(2);

/// Chats a client may send before its login is finished (the room's
/// history loading, or the name being claimed in the cluster); they are
/// handled once it is. More than a client's rate limit allows in a second
/// would be a client that is not waiting for anything.
pub const MAX_PARKED_REQUESTS: usize = 64;

/// The default `--cluster`: the prefix of every key and channel.
pub const DEFAULT_CLUSTER: &str = "threadchat";

/// Clock skew allowed when checking a token's `exp` and `nbf`: the service
/// that issues tokens and this server keep separate clocks, which NTP keeps
/// within a second or two; 30 s covers a badly synchronised machine without
/// noticeably lengthening a token's life.
pub const JWT_LEEWAY: Duration = Duration::from_secs(30);

/// Lifetime of a token made by `threadchat token` when `--ttl` is not given:
/// one sitting at the chat, after which the page asks for a fresh token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);

/// Longest lifetime `threadchat token` will sign. The server keeps no list of
/// revoked tokens, so a leaked token works until it expires; 30 days bounds
/// that and still covers a bot that runs for a month.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Shortest HS256 secret accepted, in bytes. RFC 7518 (section 3.2) requires
/// a key at least as long as the hash (256 bits); a shorter one can be found
/// by brute force from any token seen. `openssl rand -base64 32` makes one.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Smallest RSA public key accepted for RS256, in bits: keys below 2048 bits
/// are no longer considered safe (NIST SP 800-131A).
pub const MIN_RSA_KEY_BITS: usize = 2048;

/// Refused sign-ins (bad or expired tokens) one connection may make before
/// it is closed with 1008: enough for a person who pasted the wrong token,
/// too few for a script to try tokens at leisure.
pub const MAX_LOGIN_FAILURES: u32 = 5;
// --- Observability (issue 11): /metrics, /healthz, /readyz, /api/stats, /inside ---

/// Longest the dispatcher waits for an event before it beats its heartbeat
/// anyway, so that an idle dispatcher still shows it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// A heartbeat older than this makes `/healthz` answer 503: four missed idle
/// beats, far longer than any batch the dispatcher handles takes.
pub const HEALTH_STALE_AFTER: Duration = Duration::from_secs(2);

/// Outboxes listed by `/api/stats`, the fullest first: enough to see who is
/// falling behind, few enough to read at a glance.
pub const INSIDE_FULLEST_OUTBOXES: usize = 10;

/// Recent drops kept by the dispatcher for `/api/stats`.
pub const INSIDE_RECENT_DROPS: usize = 10;

/// Longest `/api/stats` waits for the dispatcher's part of the snapshot; a
/// dispatcher that takes longer is itself the news (503).
pub const STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// Histogram buckets of events per dispatcher batch: powers of two up to
/// `MAX_EVENTS_PER_BATCH` (a batch is one event plus at most that many).
pub const BATCH_EVENTS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Histogram buckets, in seconds, of a chat's time from its arrival at the
/// dispatcher to its frame queued for every recipient: microseconds when
/// idle, a few milliseconds for a full batch to thousands of users.
pub const FANOUT_SECONDS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];

/// Histogram buckets, in seconds, of one history commit (an SQLite
/// transaction with its fsync: about a millisecond on an SSD, more on disk).
pub const COMMIT_SECONDS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Histogram buckets of chats written per history commit.
pub const COMMIT_MESSAGES_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// How the server is run. `threadchat --help` documents each flag; the
/// defaults are the constants above.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "threadchat",
    version,
    about = "A WebSocket chat server on plain threads and channels"
)]
pub struct Config {
    /// Address to listen on; 0.0.0.0 shares the chat on your network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0 picks a free one) [default: $PORT, else $WS_PORT, else 8081]
    #[arg(long)]
    pub port: Option<u16>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    pub log_level: log::LevelFilter,

    /// Largest WebSocket message in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Longest chat text in characters.
    #[arg(long, default_value_t = DEFAULT_MAX_CHAT_CHARS)]
    pub max_chat_chars: usize,

    /// Messages per second per connection (burst twice that); 0 turns the limit off.
    #[arg(long, default_value_t = DEFAULT_RATE_LIMIT)]
    pub rate_limit: u32,

    /// Most messages waiting for one client before it is dropped as too slow.
    #[arg(long, default_value_t = DEFAULT_OUTBOUND_MESSAGES)]
    pub outbound_messages: usize,

    /// Most bytes waiting for one client before it is dropped as too slow.
    #[arg(long, default_value_t = DEFAULT_OUTBOUND_BYTES)]
    pub outbound_bytes: usize,

    /// Seconds a connection has to complete its HTTP request.
    #[arg(long, value_parser = parse_seconds, default_value = "10")]
    pub handshake_timeout: Duration,

    /// Seconds of client silence before the server sends a ping.
    #[arg(long, value_parser = parse_seconds, default_value = "30")]
    pub ping_interval: Duration,

    /// Seconds of client silence after which the connection is dropped.
    #[arg(long, value_parser = parse_seconds, default_value = "60")]
    pub idle_timeout: Duration,

    /// Seconds a write may stay blocked, the client taking nothing, before it is dropped.
    #[arg(long, value_parser = parse_seconds, default_value = "10")]
    pub write_timeout: Duration,

    /// Most connections at once; more are answered with HTTP 503.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most rooms at once; a handshake that would open one more gets HTTP 503.
    #[arg(long, default_value_t = DEFAULT_MAX_ROOMS)]
    pub max_rooms: usize,

    /// Chats shown to a newcomer to a room; 0 turns history (and the store) off.
    #[arg(long, default_value_t = DEFAULT_HISTORY)]
    pub history: usize,

    /// Most chats sent to a client that reconnects with "since".
    #[arg(long, default_value_t = DEFAULT_HISTORY_MAX)]
    pub history_max: usize,

    /// Chats kept per room in the store; older ones are deleted.
    #[arg(long, default_value_t = DEFAULT_RETAIN)]
    pub retain: usize,

    /// The SQLite history file (":memory:" keeps history for this process only).
    #[arg(long, default_value = DEFAULT_DB)]
    pub db: String,

    /// Several nodes as one chat: the Redis they share (redis://host:port/).
    /// History then lives in Redis, not in --db.
    #[arg(long, env = "THREADCHAT_REDIS")]
    pub redis: Option<String>,

    /// With --redis: the name of this chat in Redis (several can share one).
    #[arg(long, default_value = DEFAULT_CLUSTER, value_parser = parse_cluster_name)]
    pub cluster: String,

    /// Make every commit reach the disk before its chats are sent (survives power loss).
    #[arg(long)]
    pub fsync: bool,

    /// Tuning: most bytes of broadcasts gathered into one shared buffer (0: none).
    #[arg(long, default_value_t = DEFAULT_BROADCAST_BATCH_BYTES)]
    pub broadcast_batch_bytes: usize,

    /// Tuning: most queued buffers written with one system call (1: one each).
    #[arg(long, default_value_t = DEFAULT_WRITE_BATCH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub write_batch: usize,

    /// Origin allowed to open the chat (repeat the flag for several);
    /// by default every origin is, so the page also works from file://.
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,

    /// Sign-in: the HS256 secret tokens are signed with (or --jwt-secret-file,
    /// or $THREADCHAT_JWT_SECRET). Logins must then carry a token.
    #[arg(long, global = true)]
    pub jwt_secret: Option<Secret>,

    /// Sign-in: a file holding the HS256 secret.
    #[arg(long, global = true)]
    pub jwt_secret_file: Option<PathBuf>,

    /// Sign-in: a PEM public key (RSA for RS256, Ed25519 for EdDSA) instead of a secret.
    #[arg(long)]
    pub jwt_public_key: Option<PathBuf>,

    /// Sign-in: the issuer (`iss`) tokens must name.
    #[arg(long, global = true)]
    pub jwt_issuer: Option<String>,

    /// Sign-in: the audience (`aud`) tokens must name.
    #[arg(long, global = true)]
    pub jwt_audience: Option<String>,

    /// Sign-in: seconds of clock skew allowed when checking exp and nbf.
    #[arg(long, value_parser = parse_seconds, default_value = "30")]
    pub jwt_leeway: Duration,

    /// Sign-in: a chat reaches only users who follow the sender and whom the sender follows.
    #[arg(long)]
    pub mutual_follows: bool,

    /// Show user names on /inside and in /api/stats (by default connection ids only).
    #[arg(long)]
    pub inside_names: bool,

    /// Serve no /metrics, /healthz, /readyz, /api/stats or /inside.
    #[arg(long)]
    pub no_admin: bool,

    /// Serve /metrics, /healthz, /readyz, /api/stats and /inside on this
    /// address (host:port) instead of the chat port.
    #[arg(long)]
    pub admin_listen: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// With --redis: this node's id in the cluster, given at start-up (not a flag).
    #[arg(skip)]
    pub node: Option<String>,
}

/// What `threadchat` does besides serving.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print a sign-in token for a user, signed with the configured secret.
    Token {
        /// The user's name (the token's `sub`).
        #[arg(long)]
        user: String,
        /// How long the token is valid: 90s, 15m, 2h, 1d…
        #[arg(long, value_parser = crate::auth::parse_ttl, default_value = "1h")]
        ttl: Duration,
        /// Users this one follows, comma-separated (the `follows` claim).
        #[arg(long, value_delimiter = ',')]
        follows: Option<Vec<String>>,
    },
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".to_string(),
            port: None,
            log_level: log::LevelFilter::Info,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_chat_chars: DEFAULT_MAX_CHAT_CHARS,
            rate_limit: DEFAULT_RATE_LIMIT,
            outbound_messages: DEFAULT_OUTBOUND_MESSAGES,
            outbound_bytes: DEFAULT_OUTBOUND_BYTES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_rooms: DEFAULT_MAX_ROOMS,
            history: DEFAULT_HISTORY,
            history_max: DEFAULT_HISTORY_MAX,
            retain: DEFAULT_RETAIN,
            db: DEFAULT_DB.to_string(),
            fsync: false,
            redis: None,
            cluster: DEFAULT_CLUSTER.to_string(),
            broadcast_batch_bytes: DEFAULT_BROADCAST_BATCH_BYTES,
            write_batch: DEFAULT_WRITE_BATCH,
            allowed_origins: Vec::new(),
            jwt_secret: None,
            jwt_secret_file: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: JWT_LEEWAY,
            mutual_follows: false,
            inside_names: false,
            no_admin: false,
            admin_listen: None,
            command: None,
            node: None,
        }
    }
}

impl Config {
    /// A configuration for tests: an ephemeral port on loopback, history in
    /// memory (no file left behind), otherwise the defaults.
    pub fn ephemeral() -> Self {
        Config {
            port: Some(0),
            db: ":memory:".to_string(),
            ..Config::default()
        }
    }

    /// The HS256 secret, from exactly one of the flag, the file, or the
    /// environment (the flag wins over the environment).
    pub fn jwt_secret(&self) -> Result<Option<Secret>, String> {
        if let Some(secret) = &self.jwt_secret {
            if self.jwt_secret_file.is_some() {
                return Err("give the JWT secret once: --jwt-secret or --jwt-secret-file".into());
            }
            return Ok(Some(secret.clone()));
        }
        let env = std::env::var(auth::JWT_SECRET_ENV).ok();
        auth::secret_from(None, self.jwt_secret_file.as_deref(), env.as_deref())
    }

    /// How logins are checked: `None` when sign-in is off (no secret, no
    /// key), else the verifier built from the flags. A bad key or secret is
    /// an error naming it.
    pub fn auth(&self) -> Result<Option<AuthConfig>, String> {
        let secret = self.jwt_secret()?;
        let auth = match (secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err("give either a JWT secret or --jwt-public-key, not both".into());
            }
            (Some(secret), None) => {
                if let Some(warning) = auth::weak_secret_warning(secret.as_bytes()) {
                    log::warn!("{warning}");
                }
                AuthConfig::hs256(secret.as_bytes())?
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
                AuthConfig::from_public_key_pem(&pem)
                    .map_err(|e| format!("--jwt-public-key {}: {e}", path.display()))?
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(
            auth.with_issuer(self.jwt_issuer.clone())
                .with_audience(self.jwt_audience.clone())
                .with_leeway(self.jwt_leeway),
        ))
    }

    /// The port to bind: the flag, else `PORT`, else `WS_PORT`, else 8081.
    pub fn resolved_port(&self) -> Result<u16, String> {
        if let Some(port) = self.port {
            return Ok(port);
        }
        for var in ["PORT", "WS_PORT"] {
            if let Ok(value) = std::env::var(var) {
                return value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{var}={value:?} is not a port number"));
            }
        }
        Ok(DEFAULT_PORT)
    }
}

/// Operator connections served at once on `--admin-listen`: a scraper and
/// a few people watching `/inside`; more are closed at once.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;

/// Durations on the command line are seconds, fractions allowed (`0.5`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// A `--cluster` name: 1 to 32 of a-z, 0-9, - and _ (it starts every key).
fn parse_cluster_name(text: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a cluster name: use 1 to 32 of a-z, 0-9, - and _"
        ))
    }
}
