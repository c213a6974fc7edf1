//! A TCP proxy on loopback, to break the path between one node and Redis
//! while the others keep theirs (the network failing, rather than Redis).
//!
//! The node is given the proxy's address as its Redis; every connection it
//! opens is relayed to the real Redis by two copying threads, one each way.
//! Two ways to break it:
//! - `cut` closes every relayed connection and turns new ones away
//!   (accepted, then closed at once); `mend` lets them through again;
//! - `forget` is a path that died without a word (a firewall that dropped
//!   the connection): Redis sees its side closed, while the node's side
//!   stays open and silent. New connections go through as before.
//!
//! Plain blocking threads, like the server: this is test code, and a mutex
//! around the list of connections is the simplest thing that works here.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    cut: AtomicBool,
    stopping: AtomicBool,
    /// Every relayed connection, to break them.
    open: Mutex<Vec<Relayed>>,
    /// Every copying thread, joined when the proxy is dropped.
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

/// One relayed connection: both sockets, and whether it was forgotten.
struct Relayed {
    node: TcpStream,
    redis: TcpStream,
    forgotten: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy on a free loopback port, relaying to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(node) = incoming else { continue };
                if accepting.cut.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(redis) = TcpStream::connect(target) else {
                    continue;
                };
                relay(&accepting, node, redis);
            }
        });
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The URL to give a node as its Redis.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Closes every relayed connection and turns new ones away.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for relayed in self.shared.open.lock().unwrap().iter() {
            let _ = relayed.node.shutdown(Shutdown::Both);
            let _ = relayed.redis.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Closes Redis's side of every relayed connection and leaves the
    /// node's side open, never to carry a byte again.
    pub fn forget(&self) {
        for relayed in self.shared.open.lock().unwrap().iter() {
            relayed.forgotten.store(true, Ordering::SeqCst);
            let _ = relayed.redis.shutdown(Shutdown::Both);
        }
    }
}

/// Starts the two copying threads of one connection.
fn relay(shared: &Arc<Shared>, node: TcpStream, redis: TcpStream) {
    let (Ok(node_in), Ok(node_out), Ok(redis_in), Ok(redis_out)) = (
        node.try_clone(),
        node.try_clone(),
        redis.try_clone(),
        redis.try_clone(),
    ) else {
        return;
    };
    let forgotten = Arc::new(AtomicBool::new(false));
    shared.open.lock().unwrap().push(Relayed {
        node,
        redis,
        forgotten: forgotten.clone(),
    });
    let upward = forgotten.clone();
    let mut pumps = shared.pumps.lock().unwrap();
    pumps.push(std::thread::spawn(move || {
        pump(node_in, &redis_out, &upward);
    }));
    pumps.push(std::thread::spawn(move || {
        pump(redis_in, &node_out, &forgotten);
    }));
}

/// Copies `from` to `to` until either side ends. Then both are closed,
/// unless the connection was forgotten: the node's side is left open.
fn pump(mut from: TcpStream, mut to: &TcpStream, forgotten: &AtomicBool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if forgotten.load(Ordering::SeqCst) || to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    if !forgotten.load(Ordering::SeqCst) {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees `stopping`; once it is gone
        // no connection can be added, and closing them all ends every pump.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for relayed in self.shared.open.lock().unwrap().drain(..) {
            let _ = relayed.node.shutdown(Shutdown::Both);
            let _ = relayed.redis.shutdown(Shutdown::Both);
        }
        let pumps: Vec<_> = self.shared.pumps.lock().unwrap().drain(..).collect();
        for pump in pumps {
            let _ = pump.join();
        }
    }
}
