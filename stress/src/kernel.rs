//! What the kernel holds for connections, read from `/proc/meminfo` and
//! `/proc/net/sockstat`: memory no process's RSS shows, which users pay
//! for all the same.
//!
//! `MemAvailable` moves with everything on the machine (another process's
//! build, the page cache), so on a shared machine its change between two
//! samples is a poor measure of a few thousand connections. The kernel's
//! own counters move much less with other work, and each says what it is:
//!
//! - `KernelStack`: every thread's kernel stack (16 KiB on x86-64). Only
//!   threads count, so on loopback it is the server's: `hold` keeps its idle
//!   connections as plain sockets, no thread each.
//! - `PageTables`: the page tables mapping the processes' memory; a
//!   thread's stack needs its own page-table pages once touched.
//! - `SUnreclaim` (and `SReclaimable`): the kernel's object caches: each
//!   socket (both ends of a loopback connection: the server's and this
//!   tool's), its file and inode, and each thread's task structures.
//! - TCP `mem` (sockstat): pages queued in TCP socket buffers, both ends;
//!   an idle connection has nothing queued, so this stays near zero.
//!
//! The alternative rejected: reading `/proc/slabinfo` for every cache by
//! name. It is readable by root only, and its cache names change between
//! kernel versions; the totals above are there for every user.

use serde::{Deserialize, Serialize};

/// The kernel's memory counters at one moment, in KiB.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default)]
pub struct KernelSample {
    pub mem_available_kib: u64,
    pub kernel_stack_kib: u64,
    pub page_tables_kib: u64,
    pub slab_unreclaimable_kib: u64,
    pub slab_reclaimable_kib: u64,
    /// Pages in TCP socket buffers, machine-wide, in KiB.
    pub tcp_buffers_kib: u64,
    /// This process's own resident memory (the client side's part).
    pub tool_rss_kib: u64,
}

impl KernelSample {
    /// `None` where `/proc` cannot be read (not Linux).
    pub fn now() -> Option<KernelSample> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = meminfo.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let tool_rss_kib = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())?;
        Some(KernelSample {
            mem_available_kib: field("MemAvailable:")?,
            kernel_stack_kib: field("KernelStack:")?,
            page_tables_kib: field("PageTables:")?,
            slab_unreclaimable_kib: field("SUnreclaim:")?,
            slab_reclaimable_kib: field("SReclaimable:")?,
            tcp_buffers_kib: tcp_pages().unwrap_or(0) * page_kib(),
            tool_rss_kib,
        })
    }
}

/// How much each counter grew between two samples, per connection (KiB);
/// negative when it shrank (other work on the machine).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default)]
pub struct KernelShare {
    pub mem_available_drop: f64,
    pub kernel_stack: f64,
    pub page_tables: f64,
    pub slab_unreclaimable: f64,
    pub slab_reclaimable: f64,
    pub tcp_buffers: f64,
    pub tool_rss: f64,
}

impl KernelShare {
    pub fn between(before: &KernelSample, after: &KernelSample, connections: usize) -> Self {
        let n = connections.max(1) as f64;
        let grew = |then: u64, now: u64| (now as f64 - then as f64) / n;
        KernelShare {
            mem_available_drop: grew(after.mem_available_kib, before.mem_available_kib),
            kernel_stack: grew(before.kernel_stack_kib, after.kernel_stack_kib),
            page_tables: grew(before.page_tables_kib, after.page_tables_kib),
            slab_unreclaimable: grew(before.slab_unreclaimable_kib, after.slab_unreclaimable_kib),
            slab_reclaimable: grew(before.slab_reclaimable_kib, after.slab_reclaimable_kib),
            tcp_buffers: grew(before.tcp_buffers_kib, after.tcp_buffers_kib),
            tool_rss: grew(before.tool_rss_kib, after.tool_rss_kib),
        }
    }

    /// The kernel's part: stacks, page tables, object caches and socket
    /// buffers (both ends of loopback, see the module comment).
    pub fn kernel(&self) -> f64 {
        self.kernel_stack
            + self.page_tables
            + self.slab_unreclaimable
            + self.slab_reclaimable
            + self.tcp_buffers
    }

    pub fn describe(&self) -> String {
        format!(
            "{:.1} KiB: kernel stacks {:.1}, page tables {:.1}, slab {:.1} unreclaimable \
             + {:.1} reclaimable, TCP buffers {:.1}; this tool's RSS {:.1}",
            self.kernel(),
            self.kernel_stack,
            self.page_tables,
            self.slab_unreclaimable,
            self.slab_reclaimable,
            self.tcp_buffers,
            self.tool_rss,
        )
    }
}

/// sockstat's TCP `mem`: pages in TCP socket buffers.
fn tcp_pages() -> Option<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mem")?;
    words.next()?.parse().ok()
}

fn page_kib() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(bytes).map_or(4, |b| b / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_this_machines_counters() {
        let sample = KernelSample::now().expect("Linux /proc");
        assert!(sample.mem_available_kib > 0);
        assert!(
            sample.kernel_stack_kib > 0,
            "this very thread has a kernel stack"
        );
        assert!(sample.tool_rss_kib > 0);
    }

    #[test]
    fn shares_are_growth_per_connection_and_available_memory_counts_its_drop() {
        let before = KernelSample {
            mem_available_kib: 1_000_000,
            kernel_stack_kib: 100,
            ..KernelSample::default()
        };
        let after = KernelSample {
            mem_available_kib: 800_000,
            kernel_stack_kib: 160_100,
            ..KernelSample::default()
        };
        let share = KernelShare::between(&before, &after, 10_000);
        assert_eq!(share.mem_available_drop, 20.0);
        assert_eq!(share.kernel_stack, 16.0);
        assert_eq!(share.kernel(), 16.0);
    }
}
