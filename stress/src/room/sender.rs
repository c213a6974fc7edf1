//! A sender's writing thread, and the window that paces it.
//!
//! A sender needs to write while its own user thread is blocked reading, so
//! it gets this second thread, which writes pre-encoded frames to a clone of
//! the socket (over TLS, a second handle on the one session: `tls.rs`). It writes nothing else, and the reader writes only when
//! tungstenite answers a ping or a close, which the server sends only to a
//! silent client or at the very end: the two never interleave.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use tungstenite::WebSocket;

use super::Run;
use crate::measure::now_us;
use crate::net::{self, Conn};
use crate::scan::{self, Stamp};

/// Starts the writing thread of sender `sender` of `room`, on a clone of
/// its user's socket.
pub(super) fn spawn_sender(
    run: &Arc<Run>,
    room: usize,
    sender: u32,
    ws: &WebSocket<Conn>,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let mut socket = ws
        .get_ref()
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    let run = run.clone();
    net::spawn(format!("sender-{room}-{sender}"), move || {
        send_chats(&run, room, sender, &mut socket)
    })
    .map_err(|e| format!("cannot start a sender thread: {e}"))
}

/// The sender's thread: writes `messages` stamped chat frames, paced by the
/// rate if there is one and always by the window.
fn send_chats(run: &Run, room: usize, sender: u32, socket: &mut Conn) -> Result<(), String> {
    let plan = &run.plan;
    let state = run.room(room);
    let start_us = run.chat_start_us.load(Ordering::Relaxed);
    let deadline_us = run.deadline();
    let _ = state.sender_threads[sender as usize].set(std::thread::current());
    // The slowest reader's progress, re-read only when the window looks shut.
    let mut slowest: u64 = 0;
    let text = "x".repeat(plan.text_bytes);
    let mut rng = net::Rng::new(((room as u64) << 32) | (u64::from(sender) + 1));
    let mut frame = Vec::with_capacity(plan.text_bytes + 128);
    // Senders at a rate are spread evenly over one interval, not in step:
    // all the run's senders, in every room.
    let interval_us = if plan.rate > 0.0 {
        1e6 / plan.rate
    } else {
        0.0
    };
    let all_senders = (plan.rooms * plan.senders).max(1) as f64;
    let offset_us = interval_us * (room * plan.senders + sender as usize) as f64 / all_senders;
    for seq in 0..plan.messages as u64 {
        if interval_us > 0.0 {
            let due = start_us + (offset_us + interval_us * seq as f64) as u64;
            let now = now_us();
            if due > now {
                std::thread::sleep(Duration::from_micros(due - now));
            }
        }
        while seq >= slowest.saturating_add(plan.window as u64) {
            slowest = state.slowest_reader(sender as usize);
            if seq < slowest.saturating_add(plan.window as u64) {
                break;
            }
            if now_us() > deadline_us {
                return Err(format!("window never reopened after seq {seq}"));
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
        let stamp = Stamp {
            room: room as u32,
            sender,
            seq,
            sent_us: now_us(),
        };
        frame.clear();
        net::encode_text(
            scan::chat_json(stamp, &text).as_bytes(),
            rng.mask(),
            &mut frame,
        );
        net::write_all(socket, &frame).map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}
