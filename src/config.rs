//! Every number the server runs by, in one place.
//!
//! Each limit is a named constant with the reason it has the value it has, and
//! `Config` carries the ones an operator may change from the command line.
//! The README's table of defaults is checked against these constants by
//! `tests/readme_defaults.rs`, so the two cannot drift apart.

use std::time::Duration;

use clap::Parser;

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
/// it for everyone (see `dispatcher.rs`). `0` queues every broadcast on its
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
            broadcast_batch_bytes: DEFAULT_BROADCAST_BATCH_BYTES,
            write_batch: DEFAULT_WRITE_BATCH,
            allowed_origins: Vec::new(),
        }
    }
}

impl Config {
    /// A configuration for tests: an ephemeral port on loopback, otherwise
    /// the defaults.
    pub fn ephemeral() -> Self {
        Config {
            port: Some(0),
            ..Config::default()
        }
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

/// Durations on the command line are seconds, fractions allowed (`0.5`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}
