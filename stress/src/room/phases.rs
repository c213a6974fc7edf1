//! The main thread's side of a run: it starts the users, opens each phase
//! by dropping a gate's sender, then gathers one event per user and
//! measures the phase.
//!
//! The main thread never touches a socket. Users report to it over one
//! unbounded channel (a report must never block a user thread that is
//! timing deliveries), and everything it learns arrives as an `Event`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::outcome::{self, RoomTally};
use super::{CLOSE_GRACE, Event, Gates, RoomPlan, RoomResult, Run, TEARDOWN_RESERVE, pool, user};
use crate::errors::ErrorTally;
use crate::measure::{CpuMeter, ProcessSample, now_us};
use crate::net;
use crate::progress::progress;
use crate::sampler::RssSampler;

/// The main thread's ends of the gates: dropping one opens it.
struct GateKeys {
    login: Sender<()>,
    chat: Sender<()>,
    close: Sender<()>,
}

/// Runs every room through all the phases and measures them.
pub fn run_rooms(plan: &RoomPlan) -> Result<RoomResult, String> {
    if plan.targets.is_empty() || plan.rooms == 0 {
        return Err("nothing to run: no server or no room".into());
    }
    let hard_deadline = now_us()
        + plan
            .timeout
            .saturating_sub(TEARDOWN_RESERVE)
            .max(Duration::from_secs(5))
            .as_micros() as u64;
    let run = Arc::new(Run::new(plan, hard_deadline));
    let mut result = RoomResult {
        rooms: plan.rooms,
        nodes: plan.targets.len(),
        users: plan.users,
        silent: plan.silent,
        senders: plan.senders,
        messages: plan.messages,
        rate: plan.rate,
        window: plan.window,
        text_bytes: plan.text_bytes,
        source_addrs: run.sources.count(),
        ..RoomResult::default()
    };
    let mut errors = ErrorTally::default();

    // Phase 1: connect.
    let (events_tx, events) = crossbeam_channel::unbounded::<Event>();
    let (keys, gates) = gates();
    let (threads, pools, reports) = start_users(&run, &gates, &events_tx, &mut errors);
    drop(events_tx);
    let readers_connected = connect_phase(&run, &events, reports, &mut result, &mut errors);

    // Phase 2: the login storm.
    let settled = login_phase(
        &run,
        &events,
        keys.login,
        readers_connected,
        &mut result,
        &mut errors,
    );

    // Phase 3: chat. Senders wait for no one who is not in the room.
    for (room, state) in run.rooms.iter().enumerate() {
        for user in (0..plan.users).filter(|&u| !settled[room * plan.users + u]) {
            state.retire(user);
        }
    }
    let chat_start = chat_phase(&run, &events, keys.chat, pools, &mut result, &mut errors);

    // Phase 4: close, and hear from the silent users what became of them.
    run.deadline_us
        .store(now_us() + CLOSE_GRACE.as_micros() as u64, Ordering::Relaxed);
    drop(keys.close);
    let departures = run.departures.lock().expect("not poisoned").clone();
    let close_deadline = now_us() + 2 * CLOSE_GRACE.as_micros() as u64;
    while result.silent_fates.len() < plan.silent * plan.rooms {
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

fn gates() -> (GateKeys, Gates) {
    let (login, login_gate) = crossbeam_channel::bounded::<()>(0);
    let (chat, chat_gate) = crossbeam_channel::bounded::<()>(0);
    let (close, close_gate) = crossbeam_channel::bounded::<()>(0);
    let gates = Gates {
        login: login_gate,
        chat: chat_gate,
        close: close_gate,
    };
    (GateKeys { login, chat, close }, gates)
}

/// Starts a thread per threaded user and the pools for the rest. Returns
/// the threads, how many pools started, and how many users will report.
fn start_users(
    run: &Arc<Run>,
    gates: &Gates,
    events: &Sender<Event>,
    errors: &mut ErrorTally,
) -> (Vec<JoinHandle<()>>, usize, usize) {
    let plan = &run.plan;
    let mut threads = Vec::new();
    let mut pooled = Vec::new();
    let mut reports = 0;
    'rooms: for room in 0..plan.rooms {
        for index in 0..plan.per_room() {
            if !plan.is_threaded(index) {
                pooled.push((room, index));
                continue;
            }
            let (run, gates, events) = (run.clone(), gates.clone(), events.clone());
            let body = move || {
                if index < run.plan.users {
                    user::user(&run, room, index, &gates, &events)
                } else {
                    user::silent_user(&run, room, index, &gates, &events)
                }
            };
            match net::spawn(format!("user-{room}-{index}"), body) {
                Ok(handle) => {
                    threads.push(handle);
                    reports += 1;
                }
                Err(e) => {
                    errors.add(format!("cannot start a user thread: {e}"));
                    break 'rooms;
                }
            }
        }
    }
    let mut pools = 0;
    if !pooled.is_empty() {
        let share = pooled.len().div_ceil(plan.pool_threads.max(1));
        for (number, members) in pooled.chunks(share).enumerate() {
            let (run, gates, events) = (run.clone(), gates.clone(), events.clone());
            let members = members.to_vec();
            let count = members.len();
            match net::spawn(format!("pool-{number}"), move || {
                pool::pool(&run, members, &gates, &events)
            }) {
                Ok(handle) => {
                    threads.push(handle);
                    pools += 1;
                    reports += count;
                }
                Err(e) => errors.add(format!("cannot start a pool thread: {e}")),
            }
        }
    }
    (threads, pools, reports)
}

/// Gathers every user's connection; sets each room's expected head count.
/// Returns how many readers (not silent users) connected.
fn connect_phase(
    run: &Run,
    events: &Receiver<Event>,
    reports: usize,
    result: &mut RoomResult,
    errors: &mut ErrorTally,
) -> usize {
    let bar = progress(run.plan.progress, reports as u64, "connect");
    let connect_start = Instant::now();
    let mut per_room = vec![0; run.plan.rooms];
    let (mut readers, mut heard) = (0, 0);
    while heard < reports {
        match recv_until(events, run.deadline()) {
            Some(Event::Connected {
                room,
                silent,
                outcome,
            }) => {
                heard += 1;
                bar.inc(1);
                match outcome {
                    Ok(()) => {
                        per_room[room] += 1;
                        readers += usize::from(!silent);
                    }
                    Err(e) => errors.add(e),
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
    result.connected = per_room.iter().sum();
    // A room is complete when every user of it who connected is online.
    for (state, connected) in run.rooms.iter().zip(per_room) {
        state.expected_online.store(connected, Ordering::Relaxed);
    }
    readers
}

/// Opens the login gate and gathers the readers' logins. Returns, per
/// (room, reader), whether it settled.
fn login_phase(
    run: &Run,
    events: &Receiver<Event>,
    key: Sender<()>,
    readers: usize,
    result: &mut RoomResult,
    errors: &mut ErrorTally,
) -> Vec<bool> {
    let plan = &run.plan;
    let bar = progress(plan.progress, readers as u64, "login");
    let meter = CpuMeter::start(&plan.server_pids);
    let login_start = now_us();
    drop(key);
    let mut settled_at = login_start;
    let mut settled = vec![false; plan.rooms * plan.users];
    let mut failed = 0;
    while result.settled + failed < readers {
        match recv_until(events, run.deadline()) {
            Some(Event::Settled {
                room,
                user,
                at_us,
                frames,
                bytes,
                crossed,
            }) => {
                result.settled += 1;
                settled[room * plan.users + user] = true;
                settled_at = settled_at.max(at_us);
                result.login_frames += frames;
                result.login_bytes += bytes;
                result.presence_crossed += crossed;
                bar.inc(1);
            }
            Some(Event::LoginFailed(e)) => {
                errors.add(e);
                failed += 1;
                bar.inc(1);
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
    result.login_cpu = meter.read();
    result.server_after_login = ProcessSample::of_all(&plan.server_pids);
    settled
}

/// Opens the chat gate and gathers every settled reader's receipt and every
/// pool's latencies. Returns when the chat started.
fn chat_phase(
    run: &Run,
    events: &Receiver<Event>,
    key: Sender<()>,
    pools: usize,
    result: &mut RoomResult,
    errors: &mut ErrorTally,
) -> u64 {
    let plan = &run.plan;
    let owed = (plan.senders * plan.messages) as u64;
    let expected_receipts = result.settled;
    let bar = progress(plan.progress, owed * expected_receipts as u64, "deliveries");
    let sampler = RssSampler::start(&plan.server_pids);
    let meter = CpuMeter::start(&plan.server_pids);
    let chat_start = now_us();
    run.chat_start_us.store(chat_start, Ordering::Relaxed);
    drop(key);
    let mut tallies: Vec<RoomTally> = (0..plan.rooms).map(|_| RoomTally::default()).collect();
    let (mut receipts, mut pools_done) = (0, 0);
    while receipts < expected_receipts || pools_done < pools {
        bar.set_position(run.delivered.load(Ordering::Relaxed));
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Chatted(receipt, latency)) => {
                receipts += 1;
                tallies[receipt.room].add(&receipt, latency.as_deref());
                for e in receipt.errors {
                    errors.add(e);
                }
            }
            Ok(Event::PoolDone(latencies)) => {
                pools_done += 1;
                for (room, latency) in latencies {
                    tallies[room].add_pooled(&latency);
                }
            }
            Ok(_) => {}
            Err(_) if now_us() > run.deadline() + 2_000_000 => {
                errors.add("chat phase timed out".into());
                break;
            }
            Err(_) => {}
        }
    }
    bar.finish_and_clear();
    result.chat_cpu = meter.read();
    result.server_rss = sampler.map(RssSampler::finish);
    let names: Vec<String> = (0..plan.rooms)
        .map(|room| plan.room_name(room).unwrap_or_else(|| "(default)".into()))
        .collect();
    outcome::sum_up(result, &tallies, &names, owed, chat_start);
    chat_start
}

fn recv_until<T>(events: &Receiver<T>, deadline_us: u64) -> Option<T> {
    let left = deadline_us.saturating_sub(now_us());
    events.recv_timeout(Duration::from_micros(left)).ok()
}
