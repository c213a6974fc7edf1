//! Opening connections: loopback only, many of them, cheaply.
//!
//! A simulated user is a blocking tungstenite `WebSocket` over a socket (or
//! over TLS on it, `tls.rs`), like a client written from the course. What this module adds is what it takes to
//! open ten thousand of them from one process on one machine:
//!
//! - the soft limit on open files is raised to the hard one (every
//!   connection is a descriptor, in this process and in the server);
//! - when one source address's ephemeral ports would not suffice, sockets are
//!   bound to 127.0.0.2, 127.0.0.3, … before connecting (loopback answers on
//!   all of 127.0.0.0/8), with `IP_BIND_ADDRESS_NO_PORT` so the kernel still
//!   picks the port at `connect`, per destination, rather than at `bind`;
//! - threads get small stacks, because this machine's `kernel.pid_max`
//!   counts threads and the server under test needs two per connection.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::ClientConfig;
use tungstenite::WebSocket;
use tungstenite::protocol::WebSocketConfig;

pub use crate::tls::Conn;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// Stack of every thread this tool starts. A user thread reads frames and
/// scans them; 128 KiB is ample and keeps 1,000 users under 128 MiB of
/// address space (only touched pages cost memory).
pub const SMALL_STACK: usize = 128 * 1024;

/// tungstenite's read buffer for a user that chats. Its default is 128 KiB;
/// 64 KiB still lets one `read` take in hundreds of small frames.
pub const CHAT_READ_BUFFER: usize = 64 * 1024;

/// Time allowed for TCP connect plus the WebSocket handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a blocking read waits before its thread looks at the clock and
/// at the flags that tell it to stop. Short enough to stop promptly, long
/// enough to cost nothing while traffic flows.
pub const READ_POLL: Duration = Duration::from_millis(200);

/// Fraction of one address's ephemeral ports a run plans to use; the rest
/// is headroom for sockets in TIME_WAIT from earlier runs.
const PORT_BUDGET_FRACTION: f64 = 0.5;

/// The server under test: a WebSocket URL whose host is on loopback.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddrV4,
    /// The URL's host, for TLS's server name.
    host: String,
    /// wss://: the client configuration that trusts the server's CA.
    tls: Option<Arc<ClientConfig>>,
}

impl Target {
    /// Accepts `ws://HOST:PORT/PATH`, or `wss://` with a client
    /// configuration `tls` (`--tls-ca`), with HOST `localhost` or in
    /// 127.0.0.0/8; refuses everything else, so no run can load another
    /// machine.
    pub fn parse(url: &str, tls: Option<Arc<ClientConfig>>) -> Result<Target, String> {
        let (rest, tls) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, None),
            (None, Some(rest)) => match tls {
                Some(tls) => (rest, Some(tls)),
                None => return Err(format!("{url:?}: wss:// needs --tls-ca (the server's CA)")),
            },
            _ => return Err(format!("{url:?}: only ws:// and wss:// URLs are supported")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("{url:?}: the URL needs an explicit port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{url:?}: {port:?} is not a port"))?;
        let ip: Ipv4Addr = if host == "localhost" {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse()
                .map_err(|_| format!("{url:?}: host must be localhost or a 127.x.y.z address"))?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "{url:?}: refusing a non-loopback address; this tool loads 127.0.0.0/8 only"
            ));
        }
        Ok(Target {
            url: url.to_string(),
            addr: SocketAddrV4::new(ip, port),
            host: host.to_string(),
            tls,
        })
    }
}

impl Target {
    /// The same server's room `name`: `ws://HOST:PORT/r/<name>` (wss://
    /// over TLS).
    pub fn in_room(&self, name: &str) -> Target {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        Target {
            url: format!("{scheme}://{}:{}/r/{name}", self.host, self.addr.port()),
            ..self.clone()
        }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the limit
/// now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

/// The source addresses connections are spread over, handed out in turn.
/// Empty means "let the kernel choose" (127.0.0.1 for a loopback target).
pub struct Sources {
    addrs: Vec<Ipv4Addr>,
    next: AtomicUsize,
}

impl Sources {
    /// Enough addresses for `connections` sockets to one server: `forced`
    /// if non-zero, else as many as the ephemeral port range requires.
    pub fn for_connections(connections: usize, forced: usize) -> Sources {
        let needed = if forced > 0 {
            forced
        } else {
            let per_address = (ephemeral_ports() as f64 * PORT_BUDGET_FRACTION) as usize;
            connections.div_ceil(per_address.max(1))
        };
        let addrs = if needed <= 1 && forced == 0 {
            Vec::new()
        } else {
            (0..needed.min(250))
                .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
                .collect()
        };
        Sources {
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    pub fn count(&self) -> usize {
        self.addrs.len().max(1)
    }

    fn next(&self) -> Option<Ipv4Addr> {
        if self.addrs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.addrs[i % self.addrs.len()])
    }
}

/// Size of the ephemeral port range (`net.ipv4.ip_local_port_range`).
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|n| n.parse::<usize>().ok());
            Some(bounds.next()??.abs_diff(bounds.next()??) + 1)
        })
        .unwrap_or(28_232)
}

/// A TCP connection to the target from the next source address, with
/// Nagle's algorithm off (chat frames are small and latency is measured).
///
/// std cannot bind a socket before connecting it, so the socket is made
/// with libc and handed to std once connected.
pub fn connect(target: &Target, sources: &Sources) -> io::Result<TcpStream> {
    let Some(source) = sources.next() else {
        let stream = TcpStream::connect_timeout(&SocketAddr::from(target.addr), CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        return Ok(stream);
    };
    // SAFETY: plain socket calls on a descriptor this function owns; it is
    // wrapped in an OwnedFd at once, so every error path closes it.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let one: libc::c_int = 1;
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: a valid socket, a c_int option and sockaddr_in structs of the
    // sizes passed.
    unsafe {
        check(libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        let from = sockaddr(SocketAddrV4::new(source, 0));
        check(libc::bind(
            fd.as_raw_fd(),
            (&from as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))?;
        // Blocking connect: on loopback it is answered at once (or refused).
        let to = sockaddr(target.addr);
        check(libc::connect(
            fd.as_raw_fd(),
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))?;
    }
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Connects and performs the WebSocket handshake; the socket is left with
/// `READ_POLL` as its read timeout.
pub fn open(
    target: &Target,
    sources: &Sources,
    read_buffer: usize,
) -> Result<WebSocket<Conn>, String> {
    let stream = connect(target, sources).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| format!("connect: {e}"))?;
    let stream = match &target.tls {
        None => Conn::Plain(stream),
        Some(tls) => Conn::handshake(stream, tls.clone(), &target.host)
            .map_err(|e| format!("TLS handshake: {}", short_error(&e.to_string())))?,
    };
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let (ws, _response) =
        tungstenite::client::client_with_config(&target.url, stream, Some(config))
            .map_err(|e| format!("handshake: {}", short_error(&e.to_string())))?;
    ws.get_ref()
        .socket()
        .set_read_timeout(Some(READ_POLL))
        .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// Encodes a client text frame (masked, as RFC 6455 requires of clients)
/// with tungstenite's codec, appending it to `out`.
pub fn encode_text(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let mut frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
    frame.header_mut().mask = Some(mask);
    frame
        .format(out)
        .expect("formatting into a Vec cannot fail");
}

/// Writes all of `bytes` (over TLS: sealed, in order with the other
/// thread's writes).
pub fn write_all(socket: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    socket.write_all(bytes)
}

/// Starts a named thread with the small stack.
pub fn spawn<T: Send + 'static>(
    name: String,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(SMALL_STACK)
        .spawn(body)
}

/// A cheap, seedable random source (xorshift64*): masks, choices in churn.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), near enough for load generation.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }
}

/// First line of an error, for tables that count errors by kind.
pub fn short_error(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(80).collect()
}

/// A short tag that makes this run's usernames unique, so that users of an
/// earlier run the server has not finished removing cannot collide.
pub fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    format!("{:04x}", (nanos ^ std::process::id()) & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting_nothing() -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Arc::new(config)
    }

    #[test]
    fn wss_needs_a_ca_and_keeps_its_scheme_in_rooms() {
        assert!(Target::parse("wss://localhost:9/", None).is_err());
        let target = Target::parse("wss://localhost:9/", Some(trusting_nothing())).unwrap();
        assert_eq!(target.in_room("a").url, "wss://localhost:9/r/a");
        let plain = Target::parse("ws://127.0.0.1:9/", None).unwrap();
        assert_eq!(plain.in_room("a").url, "ws://127.0.0.1:9/r/a");
    }

    #[test]
    fn only_loopback_is_loaded_over_tls_too() {
        let refused = Target::parse("wss://192.0.2.1:9/", Some(trusting_nothing()));
        assert!(refused.is_err());
        assert!(Target::parse("https://localhost:9/", None).is_err());
    }
}
