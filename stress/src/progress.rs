//! Progress bars for a person watching a run (hidden with `--json`), drawn
//! by indicatif on stderr so they never mix with the report on stdout.

use indicatif::{ProgressBar, ProgressStyle};

pub fn progress(visible: bool, total: u64, what: &'static str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what);
    bar
}
