//! Spare threads: a connection's thread, once its connection is over, waits
//! a little while for the next accepted socket instead of ending, so that
//! short connections (a page, `/healthz`, a page of history) do not each
//! pay for a thread's start and end.
//!
//! Starting a thread is not free: the kernel copies the task, the runtime
//! maps a signal stack, and at the thread's end it is all taken down again.
//! Measured on a server answering `/healthz` over and over, reusing threads
//! took a quarter off each request's CPU time (182 to 135 µs, docs/bench.md),
//! on the same core as the chat. A thread that has just finished a
//! connection has all of it already.
//!
//! So the accept loop hands each socket first to a thread that is waiting
//! (`Spares::hand`): the hand-over is a zero-capacity channel, which takes a
//! socket only if a spare thread is blocked on it at that moment, and never
//! queues one. With none waiting, a new thread is started, as before. A
//! thread whose connection is over waits on that channel for `SPARE_WAIT`,
//! then ends; at most `MAX_SPARE_THREADS` wait at once, which bounds what
//! idle threads cost (a stack's touched pages and the kernel's part of a
//! thread, each). None of this changes a connection's life: it has one
//! thread from its accept to its close, holds its place under the caps
//! (`accept.rs`'s `Slot`) only while it lives, and a spare thread holds no
//! place at all. A panic ends its thread, as it did before. The kernel's
//! name for the thread (`/proc`, `top -H`) follows its work: `reader-<conn>`
//! while it serves a connection, `spare` while it waits.
//!
//! The alternative rejected: a fixed pool of connection threads with a
//! queue in front, as in the Rust Book's web server. A WebSocket keeps its
//! thread for as long as the client stays, so a fixed pool is a cap on
//! connections, and a queue in front of it would make the next visitor wait
//! for someone else to leave. Here every socket still gets a thread at
//! once; only the start of one is saved when one is free.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::{MAX_SPARE_THREADS, SPARE_WAIT};

/// One connection's work, from its accept to its close.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// A job and the name its thread carries while it runs.
struct Named {
    name: String,
    job: Job,
}

/// The hand-over to waiting threads, and how many wait. Owned by the accept
/// loop: when it ends, so does every spare's wait.
pub(super) struct Spares {
    handoff: Sender<Named>,
    waiting_for: Receiver<Named>,
    waiting: Arc<AtomicUsize>,
    /// Rust's name for every thread started here (a panic's message shows
    /// it); the kernel's name is the job's.
    role: &'static str,
    stack_bytes: usize,
}

impl Spares {
    pub(super) fn new(role: &'static str, stack_bytes: usize) -> Spares {
        let (handoff, waiting_for) = crossbeam_channel::bounded(0);
        Spares {
            handoff,
            waiting_for,
            waiting: Arc::new(AtomicUsize::new(0)),
            role,
            stack_bytes,
        }
    }

    /// Runs `job` on a spare thread if one is waiting, else on a new one;
    /// either way the thread is named `name` while it runs it. A thread
    /// that cannot be started drops the job, and with it what it owns.
    pub(super) fn hand(&self, name: String, job: Job) -> io::Result<()> {
        let named = match self.handoff.try_send(Named { name, job }) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(named) | TrySendError::Disconnected(named)) => named,
        };
        let waiting_for = self.waiting_for.clone();
        let waiting = self.waiting.clone();
        thread::Builder::new()
            .name(self.role.to_string())
            .stack_size(self.stack_bytes)
            .spawn(move || serve_then_wait(named, &waiting_for, &waiting))
            .map(drop)
    }
}

/// Runs `named`'s job, then waits for the next one while there is room
/// among the spares, until none comes for `SPARE_WAIT` or the accept loop
/// has ended.
fn serve_then_wait(mut named: Named, waiting_for: &Receiver<Named>, waiting: &AtomicUsize) {
    loop {
        rename_this_thread(&named.name);
        (named.job)();
        if waiting.fetch_add(1, Ordering::SeqCst) >= MAX_SPARE_THREADS {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        rename_this_thread("spare");
        let next = waiting_for.recv_timeout(SPARE_WAIT);
        waiting.fetch_sub(1, Ordering::SeqCst);
        match next {
            Ok(next) => named = next,
            Err(_) => return,
        }
    }
}

/// Sets the name the kernel shows for this thread (its first 15 bytes).
fn rename_this_thread(name: &str) {
    let mut buf = [0u8; 16];
    let len = name.len().min(buf.len() - 1);
    buf[..len].copy_from_slice(&name.as_bytes()[..len]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes, and `buf` is one, alive across the call.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}
