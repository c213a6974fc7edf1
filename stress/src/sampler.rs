//! The server's memory and threads (and this tool's threads), sampled in
//! the background over a phase: a thread that reads /proc every few
//! milliseconds until the main thread drops its stop channel (closing the
//! channel is the signal, as with the gates between phases).

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::measure::ProcessSample;
use crate::net;

/// How often the server's memory is sampled during the chat phase.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The server's memory and threads over one phase (all its processes added
/// up, when it runs as several nodes), and the most threads this tool had.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RssTrace {
    pub start_kib: u64,
    pub max_kib: u64,
    pub end_kib: u64,
    #[serde(default)]
    pub max_threads: u64,
    #[serde(default)]
    pub tool_max_threads: u64,
}

/// Samples in the background until `finish`.
pub struct RssSampler {
    stop: Sender<()>,
    thread: JoinHandle<RssTrace>,
}

impl RssSampler {
    /// Starts sampling; `None` when there is no server process to sample.
    pub fn start(pids: &[u32]) -> Option<RssSampler> {
        let pids = pids.to_vec();
        let first = ProcessSample::of_all_without_fds(&pids)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = net::spawn("rss-sampler".into(), move || {
            let mut trace = RssTrace {
                start_kib: first.rss_kib,
                max_kib: first.rss_kib,
                end_kib: first.rss_kib,
                max_threads: first.threads,
                tool_max_threads: 0,
            };
            loop {
                // Nothing is sent on `stopped`; it disconnects when `finish` drops it.
                let done = !matches!(
                    stopped.recv_timeout(RSS_SAMPLE_EVERY),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout)
                );
                if let Some(now) = ProcessSample::of_all_without_fds(&pids) {
                    trace.max_kib = trace.max_kib.max(now.rss_kib);
                    trace.end_kib = now.rss_kib;
                    trace.max_threads = trace.max_threads.max(now.threads);
                }
                if let Some(tool) = ProcessSample::without_fds(std::process::id()) {
                    trace.tool_max_threads = trace.tool_max_threads.max(tool.threads);
                }
                if done {
                    return trace;
                }
            }
        })
        .ok()?;
        Some(RssSampler { stop, thread })
    }

    pub fn finish(self) -> RssTrace {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}
