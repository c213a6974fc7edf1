//! The command line: every flag, its default (a constant of `limits.rs`),
//! and how its text is read.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::parse::{parse_cluster_name, parse_echo_path, parse_lifetime, parse_seconds};
use super::*;

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

    /// Seconds a WebSocket may stay open without logging in before it is closed (1008); 0 turns it off.
    #[arg(long, value_parser = parse_seconds, default_value = "60")]
    pub login_timeout: Duration,

    /// Seconds a write may stay blocked, the client taking nothing, before it is dropped
    /// (a WebSocket's writes and an HTTP answer's alike).
    #[arg(long, value_parser = parse_seconds, default_value = "10")]
    pub write_timeout: Duration,

    /// Most connections at once; more are answered with HTTP 503.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most connections from one client address (IPv6: one /64); more get HTTP 429. 0 turns it off.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// A proxy (an address or a range: 127.0.0.1, 10.0.0.0/8, ::1/128; repeat the flag for
    /// several) whose Forwarded or X-Forwarded-For header names the client. Others' are ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<Cidr>,

    /// Most rooms at once; a handshake that would open one more gets HTTP 503
    /// (with sign-in on: the login that would is refused).
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

    /// Chats kept in the whole store, all rooms together; past it the least
    /// recently active rooms lose their oldest chats first.
    #[arg(long, default_value_t = DEFAULT_RETAIN_TOTAL)]
    pub retain_total: usize,

    /// The SQLite history file (":memory:" keeps history for this process only).
    #[arg(long, default_value = DEFAULT_DB)]
    pub db: String,

    /// Several nodes as one chat: the Redis they share (redis://host:port/).
    /// History then lives in Redis, not in --db.
    #[arg(long, env = "THREADCHAT_REDIS")]
    pub redis: Option<RedisUrl>,

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

    /// Sign-in: seconds a token may live at most, from its iat (or from now,
    /// if that is earlier); longer-lived tokens are refused.
    #[arg(long, global = true, value_parser = parse_lifetime, default_value = "2592000")]
    pub jwt_max_lifetime: Duration,

    /// Sign-in: a chat reaches only users who follow the sender and whom the sender follows.
    #[arg(long)]
    pub mutual_follows: bool,

    /// Seconds after sending a chat during which its author may edit or delete it
    /// (moderators delete any chat at any time); 0 turns editing and own deletes off.
    #[arg(long, default_value_t = DEFAULT_EDIT_WINDOW_SECONDS)]
    pub edit_window: u64,

    /// The operator's moderation API: a file holding the bearer token that
    /// `/api/rooms/<r>/moderation` accepts from scripts (at least 32 bytes).
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,

    /// Show user names on /inside and in /api/stats (by default connection ids only).
    #[arg(long)]
    pub inside_names: bool,

    /// Serve no /metrics, /healthz, /readyz, /api/stats or /inside.
    #[arg(long)]
    pub no_admin: bool,

    /// Testing only: a WebSocket path (e.g. /echo) that sends every message
    /// back, for the Autobahn conformance suite (`make conformance`). Not a
    /// chat; refused together with sign-in.
    #[arg(long, value_name = "PATH", value_parser = parse_echo_path)]
    pub conformance_echo: Option<String>,

    /// Serve /metrics, /healthz, /readyz, /api/stats and /inside on this
    /// address (host:port) instead of the chat port.
    #[arg(long)]
    pub admin_listen: Option<String>,

    /// Serve https and wss with this certificate chain (PEM, leaf first, as
    /// certbot's fullchain.pem); needs --tls-key. Reloaded on SIGHUP.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC, as certbot's
    /// privkey.pem); needs --tls-cert. Reloaded on SIGHUP.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// With --tls-cert: answer over https with Strict-Transport-Security
    /// (a year), so browsers never use plain http for this host again.
    #[arg(long, requires = "tls_cert")]
    pub hsts: bool,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// With --redis: this node's id in the cluster, given at start-up (not a flag).
    #[arg(skip)]
    pub node: Option<String>,

    /// Most writer threads at once, set at start-up from the process's
    /// limits (`server/os_limits.rs`), not a flag: what the thread budget
    /// leaves after one reader per connection.
    #[arg(skip = usize::MAX)]
    pub max_writers: usize,
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
        #[arg(long, value_parser = parse_ttl, default_value = "1h")]
        ttl: Duration,
        /// Users this one follows, comma-separated (the `follows` claim).
        #[arg(long, value_delimiter = ',')]
        follows: Option<Vec<String>>,
        /// The only rooms the token opens, comma-separated (the `rooms`
        /// claim); without it, every room.
        #[arg(long, value_delimiter = ',')]
        rooms: Option<Vec<String>>,
        /// The user's role (the `role` claim): `moderator` may delete any
        /// chat, mute, kick, ban and set a room's mode.
        #[arg(long)]
        role: Option<String>,
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
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            trusted_proxies: Vec::new(),
            max_rooms: DEFAULT_MAX_ROOMS,
            history: DEFAULT_HISTORY,
            history_max: DEFAULT_HISTORY_MAX,
            retain: DEFAULT_RETAIN,
            retain_total: DEFAULT_RETAIN_TOTAL,
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
            jwt_max_lifetime: DEFAULT_JWT_MAX_LIFETIME,
            mutual_follows: false,
            edit_window: DEFAULT_EDIT_WINDOW_SECONDS,
            admin_token_file: None,
            inside_names: false,
            no_admin: false,
            conformance_echo: None,
            admin_listen: None,
            tls_cert: None,
            tls_key: None,
            hsts: false,
            command: None,
            node: None,
            max_writers: usize::MAX,
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
