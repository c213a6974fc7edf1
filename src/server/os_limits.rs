//! What the operating system lets one process hold, and what that means for
//! the number of connections.
//!
//! Thread-per-connection meets three per-process limits before it meets a
//! lack of memory or CPU. Each is read here once, at start-up, so that the
//! server refuses connections with a 503 at its ceiling instead of failing in
//! the middle of one:
//!
//! - open files (`ulimit -n`): one descriptor per connection. The soft limit
//!   is raised to the hard one, as far as the process may;
//! - memory mappings (`vm.max_map_count`, 65,530 by default): every thread
//!   Rust starts has two, its stack and the guard page below it, and two more
//!   for the small stack its stack-overflow handler runs on. A connection has
//!   one thread, its reader, and a writer only while it is behind, so the
//!   budget of threads is split: connections get at most fifteen sixteenths
//!   of it, and the rest bounds the writer threads (`Ceiling::threads`).
//!   Running out of mappings aborts the process when a thread starts, so
//!   this one matters most;
//! - threads (`kernel.pid_max`) are counted for the whole machine, not the
//!   process, so they cannot be budgeted here; spawn failures are handled
//!   where threads are started.

use std::fs;

use crate::config::{
    FILES_RESERVE, MAPPINGS_PER_THREAD, MAPPINGS_RESERVE, WRITER_SHARE_DENOMINATOR,
};

/// What this process can hold, as far as it can tell.
pub struct Ceiling {
    /// The most connections, and which limit says so.
    pub connections: usize,
    pub why: String,
    /// The most threads the memory mappings allow (`usize::MAX` if unknown):
    /// what `connections` readers leave of it bounds the writer threads.
    pub threads: usize,
}

/// The most connections this process can serve, and threads it can run.
pub fn ceiling() -> Ceiling {
    let files = raise_open_files_limit();
    let by_files = files.saturating_sub(FILES_RESERVE);
    let maps = read_number("/proc/sys/vm/max_map_count").unwrap_or(usize::MAX);
    let threads = maps.saturating_sub(MAPPINGS_RESERVE) / MAPPINGS_PER_THREAD;
    let by_mappings = threads / WRITER_SHARE_DENOMINATOR * (WRITER_SHARE_DENOMINATOR - 1);
    if by_mappings < by_files {
        let why = format!(
            "vm.max_map_count is {maps}, a thread needs {MAPPINGS_PER_THREAD}, and a \
             sixteenth of the threads is kept for writers"
        );
        Ceiling {
            connections: by_mappings.max(1),
            why,
            threads,
        }
    } else {
        Ceiling {
            connections: by_files.max(1),
            why: format!("the open-file limit is {files} (`ulimit -n`)"),
            threads,
        }
    }
}

/// Raises the soft limit on open files to the hard limit and returns it.
fn raise_open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return usize::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

fn read_number(path: &str) -> Option<usize> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}
