//! Errors counted by text, so a thousand identical failures are one line of
//! the report and a run never stops at its first failure.

/// Most distinct error texts kept in a report.
pub const MAX_ERRORS: usize = 8;

/// Counts errors by text, so a thousand identical failures are one line.
#[derive(Default)]
pub struct ErrorTally {
    counts: Vec<(String, usize)>,
    pub total: usize,
}

impl ErrorTally {
    pub fn add(&mut self, text: String) {
        self.total += 1;
        if let Some((_, n)) = self.counts.iter_mut().find(|(t, _)| *t == text) {
            *n += 1;
        } else if self.counts.len() < MAX_ERRORS {
            self.counts.push((text, 1));
        }
    }

    pub fn into_lines(self) -> Vec<String> {
        self.counts
            .into_iter()
            .map(|(text, n)| format!("{n}× {text}"))
            .collect()
    }
}
