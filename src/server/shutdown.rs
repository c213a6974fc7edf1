//! Stopping the server: gracefully, when asked (`ServerHandle::shutdown`),
//! and at once, when the dispatcher dies (`supervise_dispatcher`).
//!
//! A graceful stop runs in the order the threads depend on one another:
//! first no new connections, then every client told (a close frame, 1001,
//! going away) and waited for, then the dispatcher, and last the threads
//! that only the dispatcher and the connections feed (the archivist, or
//! the courier and the listener). Each of those ends when its queue
//! closes, that is, when every sender of it has been dropped: stopping is
//! done through ownership, not through a flag that each loop would have to
//! poll.
//!
//! The wait for the connections is bounded (`SHUTDOWN_GRACE`), since a
//! client may never read its close frame; past it their sockets are shut
//! down. A connection thread that still runs after that holds a sender of
//! the archivist's queue (or, with `--redis`, the courier's), which would
//! then wait for it forever: so the threads behind the dispatcher are
//! joined only when every connection has ended, and otherwise left to end
//! with the process.

use std::net::TcpStream;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use log::{error, info, warn};

use super::ServerHandle;
use super::listen::wake_address;
use crate::config::{DISPATCHER_DIED, FORCE_CLOSE_WAIT, SHUTDOWN_GRACE};
use crate::dispatcher::{Dispatcher, Event};

impl ServerHandle {
    /// Stops gracefully: no new connections, a close frame (1001, going away)
    /// to every client, then waits for the connection threads to end. Clients
    /// that have not gone after `SHUTDOWN_GRACE` have their sockets shut down.
    /// Returns whether every connection ended in time.
    pub fn shutdown(self) -> bool {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.metrics.health().set_stopping(); // `/healthz` says 503 from now

        // `accept` blocks; a connection of our own wakes it up to see the flag.
        let _ = TcpStream::connect(wake_address(self.local_addr));
        let _ = self.accept_loop.join();

        let _ = self.events.send(Event::Shutdown);
        let mut done = self.state.live.wait_for_zero(SHUTDOWN_GRACE);
        if !done {
            warn!(
                "{} connections still open after {SHUTDOWN_GRACE:?}; closing them",
                self.state.live.get()
            );
            let _ = self.events.send(Event::ForceClose);
            done = self.state.live.wait_for_zero(FORCE_CLOSE_WAIT);
        }
        // The operator's address answered through the grace period (its
        // `/healthz` saying 503, so a load balancer looks elsewhere).
        if let Some((addr, admin)) = self.admin {
            self.state.admin_closing.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(wake_address(addr));
            let _ = admin.join();
        }
        // Every reader is gone: the dispatcher may stop. It drops its
        // handle on the archivist's queue as it returns, and with ours (in
        // `state`) gone too the archivist commits what it has and ends.
        let _ = self.events.send(Event::Stop);
        drop(self.events);
        drop(self.state);
        if done {
            let _ = self.dispatcher.join();
            if let Some(archivist) = self.archivist {
                let _ = archivist.join();
            }
            if let Some(cluster) = self.cluster {
                let _ = cluster.courier.join();
                let _ = cluster.listener.join();
            }
        }
        info!("server stopped");
        done
    }
}

/// Runs the dispatcher, and if it ever panics, ends the process.
///
/// The dispatcher is the one thread the chat cannot live without: readers
/// and writers would go on, but nobody would be routed anything. A process
/// that stays up with a dead chat is the worst kind of failure, since a
/// supervisor (systemd, a container runtime) sees it running and leaves it
/// be. So its death is the process's: the cause is logged and the process
/// exits non-zero at once, for the supervisor to restart it. (Every chat
/// anyone saw is in the history file by then.)
pub(super) fn supervise_dispatcher(dispatcher: Dispatcher, events: Receiver<Event>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatcher.run(events);
    }));
    if let Err(panic) = outcome {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        error!("the dispatcher died ({why}); exiting so that a supervisor restarts the server");
        std::process::exit(DISPATCHER_DIED);
    }
}
