//! Every number the server runs by, in one place, and the flags that set
//! some of them.
//!
//! A leaf: it imports nothing from the rest of the crate, so any module may
//! read a limit without making a cycle. What is *built* from the flags (the
//! sign-in check, the store, the cluster's connections) is built by the
//! module that owns it, at start-up (`auth::from_config`, `server`).
//!
//! - `limits.rs`: each limit as a named constant with its reason;
//! - `flags.rs`: `Config`, the command line, with those constants as defaults;
//! - `secret.rs`: a secret from the command line, redacted in every log.

mod flags;
mod limits;
mod secret;

pub use flags::{Command, Config, check_ttl, parse_ttl};
pub use limits::*;
pub use secret::Secret;
