//! What is measured, and how: a shared clock, latency histograms, and the
//! CPU, memory and threads of this process and of the server.
//!
//! Latency is "now minus the send time written into the message", both read
//! from one `Instant` in this process, so no clock needs to agree with
//! another. Histograms are kept per receiving thread (no sharing on the hot
//! path) and merged at the end.

use std::sync::LazyLock;
use std::time::Instant;

use serde::{Deserialize, Serialize};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Microseconds since this process first asked; the clock in every message.
pub fn now_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

/// Values below this are counted exactly; above, each power of two is cut
/// into `SUB_BUCKETS` buckets, so every value is known within about 3%.
const EXACT_BELOW: u64 = 64;
const SUB_BUCKETS: u64 = 32;
const SUB_BITS: u32 = 5;
const BUCKETS: usize = (EXACT_BELOW + 40 * SUB_BUCKETS) as usize;

/// A log-linear histogram of microseconds (HDR-style, fixed size).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value).min(BUCKETS - 1)] += 1;
        self.total += 1;
        self.sum += value as u128;
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// The value below which `fraction` of the samples lie (bucket midpoint).
    pub fn quantile(&self, fraction: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * fraction).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_middle(index).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Latency {
        Latency {
            samples: self.total,
            mean_us: if self.total == 0 {
                0.0
            } else {
                self.sum as f64 / self.total as f64
            },
            p50_us: self.quantile(0.50),
            p90_us: self.quantile(0.90),
            p99_us: self.quantile(0.99),
            max_us: self.max,
        }
    }
}

#[inline]
fn bucket_of(value: u64) -> usize {
    if value < EXACT_BELOW {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= 6
    let mantissa = value >> (exponent - SUB_BITS); // in 32..64
    (EXACT_BELOW + (exponent as u64 - 6) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)) as usize
}

fn bucket_middle(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT_BELOW {
        return index;
    }
    let exponent = (index - EXACT_BELOW) / SUB_BUCKETS + 6;
    let mantissa = (index - EXACT_BELOW) % SUB_BUCKETS + SUB_BUCKETS;
    let low = mantissa << (exponent - SUB_BITS as u64);
    low + (1 << (exponent - SUB_BITS as u64)) / 2
}

/// Latency percentiles in microseconds.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Latency {
    pub samples: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn describe(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  max {}",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us)
        )
    }
}

/// Microseconds as milliseconds for people.
pub fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// This machine: cores, CPU model and kernel, for the record of a run.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // The machine's cores, not this process's share: runs are pinned with taskset.
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), Linux {}", kernel.trim())
}

/// CPU seconds (user + system) this process has used.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds of the server's processes together (one per node), or `None`
/// when there are none or one cannot be read.
pub fn servers_cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| process_cpu_seconds(pid)).sum()
}

/// CPU seconds (utime + stime) of another process, from /proc/PID/stat.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// A process's resident memory, threads and open descriptors at one moment.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
}

impl ProcessSample {
    pub fn of(pid: u32) -> Option<ProcessSample> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| dir.count() as u64)
            .unwrap_or(0);
        Some(ProcessSample {
            fds,
            ..ProcessSample::without_fds(pid)?
        })
    }

    /// Memory and threads only: listing 10,000 descriptors many times a
    /// second would cost more than the rest of the sampling together.
    pub fn without_fds(pid: u32) -> Option<ProcessSample> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some(ProcessSample {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
            fds: 0,
        })
    }

    /// The servers' processes together (one per node): their memory,
    /// threads and descriptors added up. `None` when there are none or one
    /// cannot be read.
    pub fn of_all(pids: &[u32]) -> Option<ProcessSample> {
        Self::sum(pids, ProcessSample::of)
    }

    /// `of_all` without the descriptors (see `without_fds`).
    pub fn of_all_without_fds(pids: &[u32]) -> Option<ProcessSample> {
        Self::sum(pids, ProcessSample::without_fds)
    }

    fn sum(pids: &[u32], sample: fn(u32) -> Option<ProcessSample>) -> Option<ProcessSample> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().try_fold(ProcessSample::default(), |sum, &pid| {
            let one = sample(pid)?;
            Some(ProcessSample {
                rss_kib: sum.rss_kib + one.rss_kib,
                threads: sum.threads + one.threads,
                fds: sum.fds + one.fds,
            })
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{:.1} MiB RSS, {} threads, {} fds",
            self.rss_kib as f64 / 1024.0,
            self.threads,
            self.fds
        )
    }
}

/// CPU used by this tool and by the server over one phase.
pub struct CpuMeter {
    server_pids: Vec<u32>,
    own_start: f64,
    server_start: Option<f64>,
    wall_start: Instant,
}

/// What a `CpuMeter` read: seconds of CPU, and the wall time they were spent in.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct CpuUse {
    pub wall_s: f64,
    pub tool_cpu_s: f64,
    pub server_cpu_s: Option<f64>,
}

impl CpuUse {
    pub fn describe(&self) -> String {
        let share = |cpu: f64| 100.0 * cpu / self.wall_s.max(1e-9);
        let server = match self.server_cpu_s {
            Some(s) => format!("server {s:.2} s ({:.0}% of a core)", share(s)),
            None => "server ? (no --server-pid)".to_string(),
        };
        format!(
            "tool {:.2} s ({:.0}%), {server}",
            self.tool_cpu_s,
            share(self.tool_cpu_s)
        )
    }
}

impl CpuMeter {
    pub fn start(server_pids: &[u32]) -> CpuMeter {
        CpuMeter {
            server_pids: server_pids.to_vec(),
            own_start: own_cpu_seconds(),
            server_start: servers_cpu_seconds(server_pids),
            wall_start: Instant::now(),
        }
    }

    pub fn read(&self) -> CpuUse {
        let server_now = servers_cpu_seconds(&self.server_pids);
        CpuUse {
            wall_s: self.wall_start.elapsed().as_secs_f64(),
            tool_cpu_s: own_cpu_seconds() - self.own_start,
            server_cpu_s: match (self.server_start, server_now) {
                (Some(start), Some(now)) => Some(now - start),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_few_percent() {
        let mut histogram = Histogram::default();
        for value in 1..=100_000 {
            histogram.record(value);
        }
        for (fraction, exact) in [(0.5, 50_000.0), (0.9, 90_000.0), (0.99, 99_000.0)] {
            let got = histogram.quantile(fraction) as f64;
            assert!((got - exact).abs() / exact < 0.04, "{fraction}: {got}");
        }
        assert_eq!(histogram.summary().max_us, 100_000);
    }

    #[test]
    fn small_values_are_exact() {
        let mut histogram = Histogram::default();
        histogram.record(7);
        assert_eq!(histogram.quantile(0.5), 7);
    }
}
