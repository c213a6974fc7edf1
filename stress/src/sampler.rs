//! The server's memory, sampled in the background over a phase: a thread
//! that reads /proc every few milliseconds until the main thread drops its
//! stop channel (closing the channel is the signal, as with the gates).

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::measure::ProcessSample;
use crate::net;
use crate::room::RssTrace;

/// How often the server's memory is sampled during the chat phase.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Samples the server's resident memory in the background.
pub struct RssSampler {
    stop: Sender<()>,
    thread: JoinHandle<RssTrace>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = net::spawn("rss-sampler".into(), move || {
            let rss = || ProcessSample::of(pid).map(|s| s.rss_kib).unwrap_or(0);
            let start = rss();
            let mut trace = RssTrace {
                start_kib: start,
                max_kib: start,
                end_kib: start,
            };
            loop {
                // Nothing is sent on `stopped`; it disconnects when `finish` drops it.
                let done = !matches!(
                    stopped.recv_timeout(RSS_SAMPLE_EVERY),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout)
                );
                let now = rss();
                trace.max_kib = trace.max_kib.max(now);
                trace.end_kib = now;
                if done {
                    return trace;
                }
            }
        })
        .expect("a sampler thread");
        RssSampler { stop, thread }
    }

    pub fn finish(self) -> RssTrace {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}
