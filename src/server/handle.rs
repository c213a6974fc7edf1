//! A running server, as its owner (`main.rs`, a test) sees it: where it
//! listens, how many connections it holds, its counters, and the reload of
//! its certificate on SIGHUP. Stopping it is `shutdown.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use log::{error, info};

use super::ServerHandle;
use crate::metrics::Metrics;

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open right now (handshaking, chatting or closing).
    pub fn connections(&self) -> usize {
        self.state.live.get()
    }

    /// Where `--admin-listen` serves, if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// This server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Reads `--tls-cert` and `--tls-key` again (on SIGHUP): new handshakes
    /// use the new pair, open connections keep theirs; a bad pair is
    /// refused with a log line and the old one stays. Without TLS, nothing.
    pub fn reload_tls(&self) {
        let Some(tls) = &self.state.tls else {
            return;
        };
        match tls.reload() {
            Ok(expires) => {
                self.state.metrics.set_tls_cert_expiry(expires);
                let days = expires
                    .duration_since(std::time::SystemTime::now())
                    .map_or(0, |left| left.as_secs() / 86_400);
                info!("TLS certificate reloaded: new handshakes use it; it expires in {days} days");
            }
            Err(e) => error!("TLS certificate not reloaded, the previous one stays in use: {e}"),
        }
    }
}
