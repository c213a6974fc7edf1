//! Every number the server runs by, in one place, and the flags that set
//! some of them.
//!
//! A leaf: it imports nothing from the rest of the crate, so any module may
//! read a limit without making a cycle. What is *built* from the flags (the
//! sign-in check, the store, the cluster's connections) is built by the
//! module that owns it, at start-up (`auth::from_config`, `server`).
//!
//! - `limits.rs`: clients and connections: sizes, rates, queues, timeouts,
//!   threads; `history.rs`, `cluster.rs`, `sign_in.rs`, `inside.rs`: the
//!   numbers of the store, of Redis, of sign-in and of looking inside,
//!   `moderation.rs`, those of moderation,
//!   each a named constant with its reason; `conformance.rs`, those of the
//!   testing echo; `tls.rs`, those of native TLS;
//! - `flags.rs`: `Config`, the command line, with those constants as defaults;
//! - `cidr.rs`: a range of addresses, as `--trusted-proxy` names proxies;
//! - `secret.rs`: a secret from the command line, redacted in every log.

mod cidr;
mod cluster;
mod conformance;
mod flags;
mod history;
mod inside;
mod limits;
mod moderation;
mod parse;
mod secret;
mod sign_in;
mod tls;

pub use cidr::Cidr;
pub use cluster::*;
pub use conformance::*;
pub use flags::{Command, Config};
pub use history::*;
pub use inside::*;
pub use limits::*;
pub use moderation::*;
pub use parse::{check_ttl, parse_ttl};
pub use secret::{RedisUrl, Secret};
pub use sign_in::*;
pub use tls::*;
