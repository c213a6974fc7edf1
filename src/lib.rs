//! threadchat: a WebSocket chat server on plain threads and channels.
//!
//! No async runtime anywhere: every connection has a reader thread and a
//! writer thread, and a single dispatcher thread owns the chat. Where to look:
//!
//! - `server`: the listener and accept loop, the connection cap, shutdown;
//! - `connection`: one client's handshake and read pump;
//! - `writer`: one client's write pump, the only writer of its socket;
//! - `outbox`: the bounded queue between everyone and a client's writer;
//! - `dispatcher`: the one owner of the chat's state, which routes events;
//! - `room`: one room's users, names and pending broadcasts;
//! - `archivist`: the one owner of the history database (SQLite);
//! - `cluster`: several nodes as one chat over Redis (`--redis`);
//! - `history`: a room's recent chats in memory, and what a newcomer is sent;
//! - `api`: JSON endpoints, answered by asking the thread that owns the data;
//! - `protocol`: the JSON messages, parsed and encoded;
//! - `http`: the page and the WebSocket handshake on the same port;
//! - `rate_limit`: the per-connection token bucket;
//! - `metrics`: what the server counts, and the `/metrics` exposition;
//! - `stats`: the `/api/stats` snapshot behind the live view (`/inside`);
//! - `admin`: answers `/metrics`, `/healthz`, `/readyz`, `/api/stats`;
//! - `config`: every limit and timeout, with its reason;
//! - `os_limits`: what the operating system allows, read at start-up;
//! - `auth`: sign-in tokens (JWT), checked and made;
//! - `session`: a connection's sign-in, kept by its reader.

pub mod admin;
pub mod api;
pub mod archivist;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod dispatcher;
pub mod history;
pub mod http;
pub mod metrics;
pub mod os_limits;
pub mod outbox;
pub mod protocol;
pub mod rate_limit;
pub mod room;
pub mod server;
pub mod session;
pub mod stats;
pub mod writer;

pub use config::Config;
pub use server::{Server, ServerHandle};
