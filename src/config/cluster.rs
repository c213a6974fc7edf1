//! The numbers of several nodes over Redis (`--redis`): leases, timeouts,
//! back-off, each with its reason. The README's cluster timings table is
//! checked against them by `tests/readme_defaults.rs`.

use std::time::Duration;

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

/// How long start-up waits for Redis (`--redis`) to accept a connection
/// before it stops with "cannot connect": long enough for a lost SYN to be
/// sent again (after 1 s) to a Redis on another host, short enough that a
/// wrong address stops the start at once rather than leaving it hanging.
/// (Reconnects later wait `REDIS_COMMAND_TIMEOUT`, and retry with backoff.)
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Characters of the host name kept in a node's id (`<host>-<pid>-<4 hex>`):
/// enough to tell machines apart in logs, and short because the id is in
/// every line a node publishes (`c <node>/<conn> …`) and in its keys.
pub const NODE_ID_HOST_CHARS: usize = 32;

/// The default `--cluster`: the prefix of every key and channel.
pub const DEFAULT_CLUSTER: &str = "threadchat";
