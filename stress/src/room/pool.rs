//! Many readers on one thread: the users of a `rooms` run who have no
//! thread of their own.
//!
//! Why: a thread per simulated user, the rest of this tool's rule, does not
//! fit 10,000 users next to a server that runs a thread for each of them
//! (`kernel.pid_max` counts every thread on the machine). Yet every user
//! must keep reading: the server sends each one every chat of its room, and
//! drops a client whose queue fills as too slow. So a pool thread holds a
//! few hundred users' sockets, non-blocking, and waits on all of them at
//! once with epoll(7); whichever has bytes is read until it has none. The
//! same tungstenite `WebSocket` is used as everywhere else: on a
//! non-blocking socket its `read` returns `WouldBlock` when no whole message
//! is buffered, and keeps the partial one for the next call.
//!
//! The alternatives rejected: plain blocking reads with a short timeout,
//! taking the sockets in turn (every idle socket would cost its timeout on
//! every round, and the senders' window would wait on the slowest round);
//! and poll(2), which rescans the whole set on every wake (see `Epoll`).
//!
//! A pool goes through the same phases as a user thread, for all its
//! members at once: connect each (blocking, one after another), log each in,
//! read presence until every member's room is complete, read the chat until
//! every member has every message, close. Latency is kept per room for the
//! pool as a whole: a pooled reader's latency includes its wait for its turn,
//! so it is reported apart from the threaded readers'.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crossbeam_channel::Sender;
use tungstenite::{Message, WebSocket};

use super::receipt::Receipt;
use super::{CLOSE_GRACE, Event, Gates, Run};
use crate::client::login_json;
use crate::measure::{Histogram, now_us};
use crate::net;
use crate::presence::Presence;

/// tungstenite's read buffer of a pooled user. There may be 10,000 of
/// them; 4 KiB still takes in dozens of chat frames per `read`.
const POOL_READ_BUFFER: usize = 4 * 1024;

/// Longest a pool waits for a socket before it looks at the clock.
const POLL_WAIT_MS: i32 = 50;

/// Most ready sockets taken from one wait; the rest come with the next.
const EPOLL_BATCH: usize = 256;

/// One pooled user.
struct Member {
    ws: WebSocket<net::Conn>,
    room: usize,
    index: usize,
    presence: Option<Presence>,
    receipt: Option<Receipt>,
    /// Why its connection ended, once it has.
    ended: Option<String>,
}

/// The life of a pool: `members` are (room, index) pairs.
pub(super) fn pool(
    run: &Arc<Run>,
    members: Vec<(usize, usize)>,
    gates: &Gates,
    events: &Sender<Event>,
) {
    let mut pool = connect_all(run, members, events);

    Gates::wait(&gates.login);
    log_in_all(run, &mut pool, events);

    Gates::wait(&gates.chat);
    let latency = chat(run, &mut pool, events);
    let _ = events.send(Event::PoolDone(latency));

    Gates::wait(&gates.close);
    for member in pool.iter_mut().filter(|m| m.ended.is_none()) {
        // Queues the close frame; on a full socket it goes with a later read.
        let _ = member.ws.close(None);
    }
    let grace = now_us() + CLOSE_GRACE.as_micros() as u64;
    pump(&mut pool, grace, |_| true, |_, _, _| {});
}

fn connect_all(run: &Run, members: Vec<(usize, usize)>, events: &Sender<Event>) -> Vec<Member> {
    let mut pool = Vec::with_capacity(members.len());
    for (room, index) in members {
        let opened = run.open(room, index, POOL_READ_BUFFER);
        let outcome = opened.as_ref().map(|_| ()).map_err(Clone::clone);
        let _ = events.send(Event::Connected {
            room,
            silent: false,
            outcome,
        });
        if let Ok(ws) = opened {
            pool.push(Member {
                ws,
                room,
                index,
                presence: None,
                receipt: None,
                ended: None,
            });
        }
    }
    pool
}

/// Sends every member's login, then reads until each has seen its room
/// complete (or failed).
fn log_in_all(run: &Run, pool: &mut [Member], events: &Sender<Event>) {
    for member in pool.iter_mut() {
        let presence = run.presence(member.room, member.index);
        // Still blocking here: a login is a few dozen bytes into an empty
        // socket buffer.
        if let Err(e) = member.ws.send(Message::text(login_json(presence.name()))) {
            member.ended = Some(format!("login: {e}"));
            let _ = events.send(Event::LoginFailed(format!("login: {e}")));
            continue;
        }
        member.presence = Some(presence);
        if let Err(e) = member.ws.get_ref().socket().set_nonblocking(true) {
            member.ended = Some(format!("set_nonblocking: {e}"));
        }
    }
    let waiting = |m: &Member| m.presence.is_some();
    pump(pool, run.deadline(), waiting, |member, message, now| {
        let presence = member.presence.as_mut().expect("only members logging in");
        let settled =
            message.and_then(|text| presence.see(std::str::from_utf8(text).unwrap_or_default()));
        match settled {
            Ok(false) => return,
            Ok(true) => {
                let _ = events.send(Event::Settled {
                    room: member.room,
                    user: member.index,
                    at_us: now,
                    frames: presence.frames,
                    bytes: presence.bytes,
                    crossed: presence.crossed,
                });
                // Settled: ready for the chat.
                member.receipt = Some(Receipt::new(
                    member.room,
                    member.index,
                    run.plan.senders,
                    run.plan.messages,
                ));
            }
            Err(e) => {
                let _ = events.send(Event::LoginFailed(e));
            }
        }
        member.presence = None;
    });
    for member in pool.iter_mut() {
        if let Some(presence) = member.presence.take() {
            let why = member
                .ended
                .clone()
                .unwrap_or_else(|| presence.incomplete());
            let _ = events.send(Event::LoginFailed(why));
        }
    }
}

/// Reads the chat until every settled member has every message, then sends
/// each member's receipt; returns the pool's latencies by room.
fn chat(run: &Run, pool: &mut [Member], events: &Sender<Event>) -> Vec<(usize, Histogram)> {
    let mut latency: Vec<(usize, Histogram)> = Vec::new();
    for member in pool.iter().filter(|m| m.receipt.is_some()) {
        if latency.last().is_none_or(|(room, _)| *room != member.room) {
            latency.push((member.room, Histogram::default()));
        }
    }
    let finish = |member: &mut Member| {
        if let Some(mut receipt) = member.receipt.take() {
            if let Some(why) = &member.ended {
                receipt.error(why.clone());
            }
            receipt.report_progress(run);
            run.room(member.room).retire(member.index);
            let _ = events.send(Event::Chatted(Box::new(receipt), None));
        }
    };
    let reading = |m: &Member| m.receipt.is_some();
    pump(
        pool,
        run.deadline(),
        reading,
        |member, message, now| match message {
            Ok(text) => {
                let room = member.room;
                let histogram = latency
                    .iter_mut()
                    .find(|(r, _)| *r == room)
                    .map(|(_, h)| h)
                    .expect("a histogram for every member's room");
                let receipt = member.receipt.as_mut().expect("only members reading");
                receipt.take(run, text, now, histogram);
                if receipt.complete() {
                    finish(member);
                }
            }
            Err(_) => finish(member),
        },
    );
    // Whoever is still reading at the deadline reports what it has.
    for member in pool.iter_mut() {
        finish(member);
    }
    latency
}

/// Waits on the sockets of every member still connected that `wanted`
/// picks, and hands each text message that arrives to `handle`, with the
/// time it was read. A member whose connection ends is marked so and handed
/// the reason once. Returns when nobody is wanted or at the deadline.
fn pump(
    pool: &mut [Member],
    deadline_us: u64,
    wanted: impl Fn(&Member) -> bool,
    mut handle: impl FnMut(&mut Member, Result<&[u8], String>, u64),
) {
    let Ok(epoll) = Epoll::new() else {
        for member in pool.iter_mut().filter(|m| m.ended.is_none() && wanted(m)) {
            member.ended = Some("cannot create an epoll instance".into());
            handle(
                member,
                Err("cannot create an epoll instance".into()),
                now_us(),
            );
        }
        return;
    };
    let mut watched = 0;
    for (at, member) in pool.iter_mut().enumerate() {
        if member.ended.is_none() && wanted(member) {
            match epoll.add(member.ws.get_ref().socket().as_raw_fd(), at) {
                Ok(()) => watched += 1,
                Err(e) => {
                    member.ended = Some(format!("epoll: {e}"));
                    handle(member, Err(format!("epoll: {e}")), now_us());
                }
            }
        }
    }
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_BATCH];
    while watched > 0 && now_us() <= deadline_us {
        for at in epoll.wait(&mut ready, POLL_WAIT_MS) {
            let member = &mut pool[at];
            // Read until the socket has nothing more, or the member is done.
            while member.ended.is_none() && wanted(member) {
                match member.ws.read() {
                    Ok(Message::Text(text)) => handle(member, Ok(text.as_bytes()), now_us()),
                    Ok(Message::Close(frame)) => {
                        let why = match frame {
                            Some(f) => {
                                format!("closed by server: {} {}", u16::from(f.code), f.reason)
                            }
                            None => "closed by server".into(),
                        };
                        member.ended = Some(why.clone());
                        handle(member, Err(why), now_us());
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock =>
                    {
                        break;
                    }
                    Err(e) => {
                        let why = net::short_error(&e.to_string());
                        member.ended = Some(why.clone());
                        handle(member, Err(why), now_us());
                    }
                }
            }
            if member.ended.is_some() || !wanted(member) {
                // Level-triggered: a socket left in the set while unwanted
                // would be reported ready again and again.
                epoll.remove(member.ws.get_ref().socket().as_raw_fd());
                watched -= 1;
            }
        }
    }
}

/// An epoll(7) instance: the kernel keeps the set of watched sockets, and a
/// wait returns only those with bytes to read. poll(2) was tried first: it
/// hands the kernel the whole set, some 600 sockets per pool, on every wake,
/// and a chat reaching a room's 100 readers one writer at a time woke the
/// pool dozens of times; the tool then spent 81% of its core relaying
/// 20,000 deliveries a second.
pub(crate) struct Epoll(OwnedFd);

impl Epoll {
    pub(crate) fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 takes flags only; a non-negative result is
        // a descriptor we own from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us and nothing else owns it.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for reading; `wait` reports it as `token`.
    pub(crate) fn add(&self, fd: RawFd, token: usize) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token as u64,
        };
        // SAFETY: both descriptors are open, and `event` is a valid struct.
        let rc =
            unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn remove(&self, fd: RawFd) {
        // SAFETY: both descriptors are open; DEL ignores the event argument.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits up to `timeout_ms` and returns the tokens of the ready sockets
    /// (none on a timeout or a signal).
    pub(crate) fn wait(&self, ready: &mut [libc::epoll_event], timeout_ms: i32) -> Vec<usize> {
        // SAFETY: `ready` is a live, writable array of `ready.len()` events.
        let count = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                ready.as_mut_ptr(),
                ready.len() as i32,
                timeout_ms,
            )
        };
        ready[..count.max(0) as usize]
            .iter()
            .map(|event| event.u64 as usize)
            .collect()
    }
}
