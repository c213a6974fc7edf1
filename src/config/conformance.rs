//! The numbers of the conformance echo (`--conformance-echo`): a WebSocket
//! path, for testing only, that sends every message back so that the
//! Autobahn TestSuite can check the server's WebSocket (`make conformance`).
//! It is off unless the flag names a path.

use std::time::Duration;

/// Longest `--conformance-echo` path, after its `/`: a name typed on a
/// command line, not data.
pub const MAX_ECHO_PATH_CHARS: usize = 64;

/// How often an echo connection's reader, quiet, checks whether the server
/// is stopping. The dispatcher tells the chat's connections (it holds their
/// queues); an echo connection it never knew, so its reader looks for
/// itself, well within `SHUTDOWN_GRACE`.
pub const ECHO_STOP_POLL: Duration = Duration::from_millis(250);
