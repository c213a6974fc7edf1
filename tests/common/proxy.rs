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
//!   stays open and silent. New connections go through as before;
//! - `lose_answer_to` lets the next request that contains some bytes reach
//!   Redis and keeps its answer, and everything after it on that
//!   connection, from the node: the path broke between the two, so Redis
//!   did what was asked and the node never heard that it did.
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
    /// Bytes whose request's answer is to be lost (`lose_answer_to`).
    lose: Mutex<Option<Vec<u8>>>,
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

/// What the copying threads of one connection share.
#[derive(Clone, Default)]
struct Fate {
    /// Neither side hears the other again; the node's side stays open.
    forgotten: Arc<AtomicBool>,
    /// Redis's answers no longer reach the node (`lose_answer_to`).
    deaf: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy on a free loopback port, relaying to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            lose: Mutex::new(None),
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

    /// The next request containing `bytes`, on any connection, reaches
    /// Redis; from then on nothing Redis sends on that connection reaches
    /// the node, until `cut` closes it.
    pub fn lose_answer_to(&self, bytes: &[u8]) {
        *self.shared.lose.lock().unwrap() = Some(bytes.to_vec());
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
    let fate = Fate::default();
    shared.open.lock().unwrap().push(Relayed {
        node,
        redis,
        forgotten: fate.forgotten.clone(),
    });
    let (up, down) = (fate.clone(), fate);
    let watching = shared.clone();
    let mut pumps = shared.pumps.lock().unwrap();
    pumps.push(std::thread::spawn(move || {
        pump(node_in, &redis_out, &up, Some(&watching));
    }));
    pumps.push(std::thread::spawn(move || {
        pump(redis_in, &node_out, &down, None);
    }));
}

/// Copies `from` to `to` until either side ends. Then both are closed,
/// unless the connection was forgotten: the node's side is left open.
/// Upward (`shared` given), a request carrying the bytes to lose the
/// answer to makes the connection deaf before it goes on to Redis;
/// downward, a deaf connection's bytes are read and dropped.
fn pump(mut from: TcpStream, mut to: &TcpStream, fate: &Fate, shared: Option<&Shared>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = &buffer[..n];
                if let Some(shared) = shared {
                    let mut lose = shared.lose.lock().unwrap();
                    if lose
                        .as_ref()
                        .is_some_and(|bytes| chunk.windows(bytes.len()).any(|w| w == bytes))
                    {
                        *lose = None;
                        fate.deaf.store(true, Ordering::SeqCst);
                    }
                } else if fate.deaf.load(Ordering::SeqCst) {
                    continue;
                }
                if fate.forgotten.load(Ordering::SeqCst) || to.write_all(chunk).is_err() {
                    break;
                }
            }
        }
    }
    if !fate.forgotten.load(Ordering::SeqCst) {
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
