//! The listening sockets: the chat's address and `--admin-listen`'s, and
//! the address shutdown connects to in order to wake an accept loop.
//!
//! A socket is made with `socket2` rather than `TcpListener::bind` for two
//! settings std does not offer (see `listen`). The accept loops block in
//! `accept` with no timeout, so that an idle server uses no CPU; to stop
//! one, shutdown sets a flag and then connects to the loop's own address
//! (`wake_address`), which makes `accept` return and the loop look at the
//! flag.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, LISTEN_BACKLOG};

/// Resolves the configured host and port and listens there.
pub(super) fn resolve_and_listen(config: &Config) -> io::Result<TcpListener> {
    let port = config.resolved_port().map_err(io::Error::other)?;
    listen_on((config.host.as_str(), port))
}

/// Resolves an address and listens there.
pub(super) fn listen_on(addr: impl ToSocketAddrs + std::fmt::Debug) -> io::Result<TcpListener> {
    let resolved = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr:?} resolves to no address")))?;
    listen(resolved)
}

/// A listening socket, made with `socket2` rather than `TcpListener::bind`
/// for two settings std does not offer: a backlog long enough for a
/// thousand clients connecting at once (std's 128 overflows, and each
/// overflowed client waits a second to try again), and `SO_REUSEADDR`, so a
/// restarted server can bind its port while old connections linger in
/// TIME_WAIT.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The address to connect to to wake the accept loop listening on `addr`:
/// `addr` itself, except that `0.0.0.0` and `::` are not addresses one can
/// connect to, so those become the loopback address.
pub(super) fn wake_address(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => addr.set_ip([127, 0, 0, 1].into()),
            SocketAddr::V6(_) => addr.set_ip(std::net::Ipv6Addr::LOCALHOST.into()),
        }
    }
    addr
}
