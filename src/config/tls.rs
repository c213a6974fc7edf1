//! The numbers of native TLS (`--tls-cert`, `--tls-key`): the port speaks
//! https and wss when both are given, plain http and ws otherwise.

use std::time::Duration;

/// How close to its expiry the certificate makes `/readyz` answer 503: a
/// week leaves a renewal that failed (certbot's timer runs twice a day)
/// several working days to be noticed and fixed before any browser refuses
/// the page.
pub const CERT_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// `Strict-Transport-Security`'s `max-age` with `--hsts`: one year, what
/// browsers' preload lists ask for; a shorter age would let a browser fall
/// back to plain http between visits of a weekly class.
pub const HSTS_MAX_AGE_SECONDS: u64 = 365 * 24 * 60 * 60;
