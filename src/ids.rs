//! The names things go by across threads: a connection's id, and the wall
//! clock as the protocol writes times.
//!
//! A leaf: it imports nothing from the crate, so every module may use it
//! without making a cycle. (A connection id used to live in the dispatcher,
//! which made the store, the cluster and the rooms import the dispatcher
//! just to name a connection.)

use std::time::{SystemTime, UNIX_EPOCH};

/// Identifies a connection for its whole life; assigned by the accept loop,
/// from 1 up. The log's `conn N`, the store's routing tag, the cluster's
/// holder of a name: all the same number.
pub type ConnId = u64;

/// The wall clock in milliseconds since the Unix epoch: a chat's `ts`, a
/// drop's `at_ms`. (A clock set before 1970 reads as 0.)
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
