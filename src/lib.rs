//! threadchat: a WebSocket chat server on plain threads and channels.
//!
//! No async runtime anywhere: every connection has a reader thread (and a
//! writer thread only while it is behind), and a single dispatcher thread
//! owns the chat. Each thread
//! of the README's diagram is a folder or a file named for its role, in the
//! order one chat travels:
//!
//! - `server`: the listener, the accept loops, the rejecter, shutdown;
//! - `connection`: one socket's life: the front door (page, API or chat),
//!   the reader, the writer, a sign-in session, the rate limit;
//! - `http`: HTTP as text: request heads, routes, the handshake, pages, and
//!   the endpoints answered by asking the thread that owns the data;
//! - `dispatcher`: the one owner of the chat: clients, rooms, logins;
//! - `outbox`: the bounded queue between everyone and a client's writer;
//! - `archivist`: the one owner of the history database (SQLite);
//! - `cluster`: the courier and the listener, several nodes over Redis;
//!
//! and what they share, each a leaf or near one:
//!
//! - `protocol`: the JSON messages, parsed and encoded, and why a message
//!   or a connection is refused;
//! - `auth`: sign-in tokens (JWT), checked and made;
//! - `metrics`: what the server counts, `/metrics` and `/api/stats`;
//! - `config`: every limit and timeout, with its reason, and the flags;
//! - `ids`: a connection's id and the wall clock;
//! - `net`: one fact about blocking sockets, and a connection's byte
//!   stream, plain or TLS (how a reader and a writer share a TLS session);
//! - `tls`: native TLS's certificates, checked and reloaded;
//! - `ask`: asking the thread that owns an answer, with a timeout.

pub mod archivist;
pub mod ask;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod dispatcher;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod net;
pub mod outbox;
pub mod protocol;
pub mod server;
pub mod tls;

pub use config::Config;
pub use server::{Server, ServerHandle};
