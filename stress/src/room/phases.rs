//! The main thread's side of a room run: it opens each phase by dropping a
//! gate's sender, then gathers one event per user and measures the phase.
//!
//! The main thread never touches a socket. Users report to it over one
//! unbounded channel (a report must never block a user thread that is
//! timing deliveries), and everything it learns arrives as an `Event`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::{CLOSE_GRACE, Event, Gates, Room, RoomPlan, RoomResult, TEARDOWN_RESERVE, user};
use crate::errors::ErrorTally;
use crate::measure::{CpuMeter, Histogram, now_us};
use crate::net::{self, Sources};
use crate::progress::progress;
use crate::sampler::RssSampler;

/// Runs one room through all its phases and measures it.
pub fn run_room(plan: &RoomPlan) -> Result<RoomResult, String> {
    let hard_deadline = now_us()
        + plan
            .timeout
            .saturating_sub(TEARDOWN_RESERVE)
            .max(Duration::from_secs(5))
            .as_micros() as u64;
    let total_users = plan.users + plan.silent;
    let room = Arc::new(Room {
        plan: plan.clone(),
        tag: net::run_tag(),
        sources: Sources::for_connections(total_users, plan.source_addrs),
        expected_online: AtomicUsize::new(total_users),
        deadline_us: AtomicU64::new(hard_deadline),
        delivered: AtomicU64::new(0),
        chat_start_us: AtomicU64::new(0),
        departures: Mutex::new(Vec::new()),
        read: (0..plan.users * plan.senders)
            .map(|_| AtomicU64::new(0))
            .collect(),
        sender_threads: (0..plan.senders).map(|_| OnceLock::new()).collect(),
    });
    let mut result = RoomResult {
        users: plan.users,
        silent: plan.silent,
        senders: plan.senders,
        messages: plan.messages,
        rate: plan.rate,
        window: plan.window,
        text_bytes: plan.text_bytes,
        source_addrs: room.sources.count(),
        expected: (plan.senders * plan.messages) as u64,
        ..RoomResult::default()
    };
    let mut errors = ErrorTally::default();

    // Phase 1: connect.
    let (events_tx, events) = crossbeam_channel::unbounded::<Event>();
    let (login_open, login_gate) = crossbeam_channel::bounded::<()>(0);
    let (chat_open, chat_gate) = crossbeam_channel::bounded::<()>(0);
    let (close_open, close_gate) = crossbeam_channel::bounded::<()>(0);
    let gates = Gates {
        login: login_gate,
        chat: chat_gate,
        close: close_gate,
    };
    let bar = progress(plan.progress, total_users as u64, "connect");
    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(total_users);
    for index in 0..total_users {
        let (room, gates, events) = (room.clone(), gates.clone(), events_tx.clone());
        let body = move || {
            if index < room.plan.users {
                user::user(&room, index, &gates, &events)
            } else {
                user::silent_user(&room, index - room.plan.users, &gates, &events)
            }
        };
        match net::spawn(format!("user-{index}"), body) {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                errors.add(format!("cannot start a user thread: {e}"));
                break;
            }
        }
    }
    drop(events_tx);
    let spawned = threads.len();
    let connect_start = Instant::now();
    let (mut connected_normal, mut connected_silent) = (0, 0);
    let mut reports = 0;
    while reports < spawned {
        match recv_until(&events, hard_deadline) {
            Some(Event::Connected { silent, outcome }) => {
                reports += 1;
                bar.inc(1);
                match (outcome, silent) {
                    (Ok(()), false) => connected_normal += 1,
                    (Ok(()), true) => connected_silent += 1,
                    (Err(e), _) => errors.add(e),
                }
            }
            Some(_) => {}
            None => {
                errors.add("connect phase timed out".into());
                break;
            }
        }
    }
    bar.finish_and_clear();
    result.connect_s = connect_start.elapsed().as_secs_f64();
    result.connected = connected_normal + connected_silent;
    // The room is complete when every user who connected is online.
    room.expected_online
        .store(result.connected, Ordering::Relaxed);

    // Phase 2: the login storm.
    let normal_connected = connected_normal;
    let bar = progress(plan.progress, normal_connected as u64, "login");
    let login_meter = CpuMeter::start(plan.server_pid);
    let login_start = now_us();
    drop(login_open);
    let mut settled_at = login_start;
    let mut is_settled = vec![false; plan.users];
    while result.settled < normal_connected {
        match recv_until(&events, hard_deadline) {
            Some(Event::Settled {
                user,
                at_us,
                frames,
                bytes,
            }) => {
                result.settled += 1;
                is_settled[user] = true;
                settled_at = settled_at.max(at_us);
                result.login_frames += frames;
                result.login_bytes += bytes;
                bar.inc(1);
            }
            Some(Event::LoginFailed(e)) => {
                errors.add(e);
                bar.inc(1);
                if result.settled + errors.total >= normal_connected {
                    break;
                }
            }
            Some(_) => {}
            None => {
                errors.add("login phase timed out".into());
                break;
            }
        }
    }
    bar.finish_and_clear();
    result.login_s = (settled_at - login_start) as f64 / 1e6;
    result.login_cpu = login_meter.read();

    // Phase 3: chat. Senders wait for no one who is not in the room.
    for (user, _) in is_settled.iter().enumerate().filter(|(_, s)| !**s) {
        room.retire(user);
    }
    let expected_receipts = result.settled;
    let bar = progress(
        plan.progress,
        result.expected * expected_receipts as u64,
        "deliveries",
    );
    let sampler = plan.server_pid.map(RssSampler::start);
    let chat_meter = CpuMeter::start(plan.server_pid);
    let chat_start = now_us();
    room.chat_start_us.store(chat_start, Ordering::Relaxed);
    drop(chat_open);
    let mut latency = Histogram::default();
    let mut last_delivery = chat_start;
    let mut receipts = 0;
    while receipts < expected_receipts {
        bar.set_position(room.delivered.load(Ordering::Relaxed));
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Chatted(receipt)) => {
                receipts += 1;
                latency.merge(&receipt.latency);
                result.delivered += receipt.distinct;
                result.duplicated += receipt.duplicated;
                result.out_of_order += receipt.out_of_order;
                last_delivery = last_delivery.max(receipt.last_us);
                for e in receipt.errors {
                    errors.add(e);
                }
            }
            Ok(_) => {}
            Err(_) if now_us() > hard_deadline + 2_000_000 => {
                errors.add("chat phase timed out".into());
                break;
            }
            Err(_) => {}
        }
    }
    bar.finish_and_clear();
    result.chat_cpu = chat_meter.read();
    result.server_rss = sampler.map(RssSampler::finish);
    result.chat_s = (last_delivery.saturating_sub(chat_start)) as f64 / 1e6;
    // From here on, `expected` counts deliveries to everyone, not to one.
    result.expected *= receipts as u64;
    result.lost = result.expected.saturating_sub(result.delivered);
    result.deliveries_per_s = if result.chat_s > 0.0 {
        result.delivered as f64 / result.chat_s
    } else {
        0.0
    };
    result.latency = latency.summary();

    // Phase 4: close, and hear from the silent users what became of them.
    room.deadline_us
        .store(now_us() + CLOSE_GRACE.as_micros() as u64, Ordering::Relaxed);
    drop(close_open);
    let departures = room.departures.lock().expect("not poisoned").clone();
    let close_deadline = now_us() + 2 * CLOSE_GRACE.as_micros() as u64;
    while result.silent_fates.len() < plan.silent {
        match recv_until(&events, close_deadline) {
            Some(Event::Silent(mut fate)) => {
                fate.dropped_after_ms = departures
                    .iter()
                    .find(|(name, _)| *name == fate.name)
                    .map(|(_, at)| at.saturating_sub(chat_start) as f64 / 1000.0);
                result.silent_fates.push(fate);
            }
            Some(_) => {}
            None => break,
        }
    }
    result.silent_fates.sort_by(|a, b| a.name.cmp(&b.name));
    for thread in threads {
        let _ = thread.join();
    }
    result.errors = errors.into_lines();
    Ok(result)
}

fn recv_until<T>(events: &Receiver<T>, deadline_us: u64) -> Option<T> {
    let left = deadline_us.saturating_sub(now_us());
    events.recv_timeout(Duration::from_micros(left)).ok()
}
