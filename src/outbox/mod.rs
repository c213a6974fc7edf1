//! A client's outbound queue: the only way bytes reach its socket.
//!
//! Several threads have something to send to one client: the dispatcher
//! (broadcasts, refusals) and the client's own reader (pongs, close replies,
//! refusals of bad input). Two of them writing at once would interleave
//! half-written frames, so exactly one may write at a time, and whose turn
//! it is is one named state per client (`turn.rs`): nobody (`Idle`), the
//! pusher itself for one frame the socket takes at once (`Direct`), or a
//! writer thread while the client has a backlog (`Backlogged`).
//!
//! The common case costs no thread and no wake-up: a frame pushed while
//! nothing waits is written in place with one non-blocking `send`; the
//! bytes are in the kernel before `push` returns. Only when the socket
//! would block, frames already wait, or the dispatcher is behind, does the
//! frame go into the queue,
//! which a writer thread (`connection/writer.rs`) drains; that thread
//! exists only while there is a backlog, plus a short linger.
//!
//! The queue is bounded in messages and in bytes, and pushing never blocks:
//! a full queue means the client has stopped reading, and it is disconnected
//! instead of making anybody wait. (The channel underneath is crossbeam's
//! unbounded one, with the bound kept here: a bounded crossbeam channel
//! allocates all its slots up front, which for 10,000 mostly idle clients
//! would cost more memory than the clients themselves.)

mod turn;

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::net::Stream;
use crate::protocol::Frame;

use turn::{AtomicTurn, Now};
pub use turn::{Carry, Linger, Turn, WriterStart};

/// What the writer thread is asked to do.
pub enum Outbound {
    /// Write these bytes (one or more complete frames).
    Frame(Frame),
    /// Write this close frame after everything queued before it, then close
    /// the socket. Nothing queued after a close frame is ever written: the
    /// WebSocket protocol allows no data after it.
    Close(Frame),
    /// Write everything queued before this, then close the socket.
    Finish,
}

/// State that the senders and the writers of one connection share.
pub struct Shared {
    /// The socket, shared by the reader (which reads) and whoever holds the
    /// turn to write. Anyone may shut it down: that is how a connection is
    /// ended from outside, since it wakes a reader blocked in `read`.
    pub socket: Arc<Stream>,
    /// Whose turn it is to write the socket (`turn.rs`).
    turn: AtomicTurn,
    /// Whether a frame may be written in place by its pusher: only on a
    /// plain socket. Over TLS encryption stays off the dispatcher's thread,
    /// so every frame goes through the writer thread.
    direct: bool,
    /// The queue's receiving end, drained by the writer thread of the
    /// moment.
    pub receiver: Receiver<Outbound>,
    /// What a direct write left unwritten (the socket took part of a frame,
    /// or none of it): the next writer writes it before anything queued.
    carry: Mutex<Option<Carry>>,
    /// Starts a writer thread when a backlog needs one; set when the
    /// connection opens (`Inbox::open`).
    start: OnceLock<Box<dyn WriterStart>>,
    /// The writer thread of the moment, to wake it from its linger.
    writer: Mutex<Option<Thread>>,
    /// True while a writer thread lives (serving or lingering).
    writer_alive: AtomicBool,
    /// True while the writer lingers asleep (parked) waiting for a backlog.
    writer_asleep: AtomicBool,
    /// The reader waiting for the connection's last write (`wait_closed`).
    closing: Mutex<Option<Thread>>,
    /// Bytes pushed and not yet taken by the writer.
    queued_bytes: AtomicUsize,
    /// Set when the connection is being dropped (too slow, server shutdown);
    /// the writer stops writing what is queued when it sees it.
    abandoned: AtomicBool,
    /// The close frame to send, if it can be, when the connection is
    /// abandoned.
    last_words: OnceLock<Frame>,
    /// Set by the dispatcher when it admits the client's first login, and
    /// never cleared: the reader, which cannot know by itself whether a
    /// login it passed on was admitted, reads it at its wake-ups to keep
    /// `--login-timeout`. A flag rather than a message: the reader only
    /// ever needs its latest value, and reading it never waits.
    logged_in: AtomicBool,
}

/// The sending half. Cheap to clone: the dispatcher keeps one, the reader
/// another.
#[derive(Clone)]
pub struct Outbox {
    sender: Sender<Outbound>,
    shared: Arc<Shared>,
    max_messages: usize,
    max_bytes: usize,
}

/// The writing side before the connection opens: the connection's thread
/// keeps it until its 101 is sent, then opens it (`open`). Until then
/// everything pushed waits in the queue.
pub struct Inbox {
    pub shared: Arc<Shared>,
}

/// The queue was full: the client is too slow and must go.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

/// Makes the queue of one connection.
pub fn outbox(socket: Arc<Stream>, max_messages: usize, max_bytes: usize) -> (Outbox, Inbox) {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        direct: !socket.is_tls(),
        socket,
        turn: AtomicTurn::new(Turn::Opening),
        receiver,
        carry: Mutex::new(None),
        start: OnceLock::new(),
        writer: Mutex::new(None),
        writer_alive: AtomicBool::new(false),
        writer_asleep: AtomicBool::new(false),
        closing: Mutex::new(None),
        queued_bytes: AtomicUsize::new(0),
        abandoned: AtomicBool::new(false),
        last_words: OnceLock::new(),
        logged_in: AtomicBool::new(false),
    });
    let outbox = Outbox {
        sender,
        shared: shared.clone(),
        max_messages,
        max_bytes,
    };
    (outbox, Inbox { shared })
}

impl Inbox {
    /// The 101 is sent: from now on frames reach the socket, in place or
    /// through a writer thread that `start` starts.
    pub fn open(self, start: Box<dyn WriterStart>) {
        let _ = self.shared.start.set(start);
        self.shared.opened();
    }
}

impl Outbox {
    /// Writes a frame now if the socket takes it, else queues it, unless
    /// the client is already too far behind. Never blocks. A push after the
    /// connection has closed is silently dropped: its reader will report it.
    pub fn push(&self, frame: Frame) -> Result<(), QueueFull> {
        let queued = self.shared.queued_bytes.load(Ordering::Relaxed);
        if self.sender.len() >= self.max_messages
            || queued.saturating_add(frame.len()) > self.max_bytes
        {
            return Err(QueueFull);
        }
        if let Now::Done = self.shared.write_now(&frame) {
            return Ok(());
        }
        self.shared.added(frame.len());
        self.send(Outbound::Frame(frame));
        Ok(())
    }

    /// Queues a close frame, the last thing the client will be sent. Not
    /// bounded: a close frame must always get through to a client that reads.
    pub fn close(&self, close_frame: Frame) {
        if self.shared.close_now(Some(&close_frame)) {
            return;
        }
        self.shared.added(close_frame.len());
        self.send(Outbound::Close(close_frame));
    }

    /// Asks the writer to flush what is queued and then close the socket.
    pub fn finish(&self) {
        if self.shared.close_now(None) {
            return;
        }
        self.send(Outbound::Finish);
    }

    /// Drops the connection now: whatever is queued is abandoned, `last_words`
    /// (a close frame) is written if the writer is between frames, and the
    /// socket is shut down. Used when waiting on the client is not an option.
    pub fn abandon(&self, last_words: Frame) {
        let _ = self.shared.last_words.set(last_words);
        self.shared.abandoned.store(true, Ordering::Release);
        // Gives the writer the turn; one blocked in a write notices the
        // flag within `WRITE_POLL_INTERVAL`.
        self.send(Outbound::Finish);
    }

    /// Queues, then makes sure someone will write it: see `turn.rs` for
    /// why the fence makes a lost hand-over impossible.
    fn send(&self, item: Outbound) {
        let _ = self.sender.send(item);
        fence(Ordering::SeqCst);
        self.shared.queued_work();
    }

    /// What waits in the queue now: messages (pushes)
    /// and bytes. Two atomic loads; the dispatcher reads it for `/api/stats`.
    pub fn queued(&self) -> (usize, usize) {
        (
            self.sender.len(),
            self.shared.queued_bytes.load(Ordering::Relaxed),
        )
    }

    /// The bounds this queue was made with.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_messages, self.max_bytes)
    }

    /// Whether the dispatcher has dropped this client
    /// (`abandon`): how its reader tells a slow consumer from a client close.
    pub fn is_abandoned(&self) -> bool {
        self.shared.is_abandoned()
    }

    /// Wakes the writer with nothing to write, so that it flushes what the
    /// TLS session wants to send by itself (`net::Stream::wants_write`).
    /// Not counted against the bounds: it carries no byte.
    pub fn wake(&self) {
        self.send(Outbound::Frame(Frame::new()));
    }

    /// The dispatcher has admitted a login on this connection.
    pub fn mark_logged_in(&self) {
        self.shared.logged_in.store(true, Ordering::Release);
    }

    /// Whether a login has ever been admitted on this connection.
    pub fn has_logged_in(&self) -> bool {
        self.shared.logged_in.load(Ordering::Acquire)
    }

    /// Shuts the socket down at once, waking its reader and writer.
    pub fn shutdown_socket(&self) {
        let _ = self.shared.socket.shutdown(Shutdown::Both);
    }

    /// Waits, at most `bound`, for the connection's last write: the writer
    /// that took `Finish` or a close frame has closed the socket. The
    /// reader calls it after its goodbye, so that the connection's writing
    /// is over when its thread ends.
    pub fn wait_closed(&self, bound: Duration) {
        self.shared.wait_closed(bound);
    }
}

impl Shared {
    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// The close frame left by `Outbox::abandon`.
    pub fn last_words(&self) -> Option<&Frame> {
        self.last_words.get()
    }

    /// Bytes put on the queue (or into the carry). Every frame a writer
    /// may take is counted here first, so the count never goes below zero.
    fn added(&self, bytes: usize) {
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The writer reports bytes it has taken off the queue.
    pub fn taken(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}
