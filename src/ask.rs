//! Asking the owner: how a thread learns something only another thread
//! knows, without sharing the state behind a lock.
//!
//! The asker sends the owner (the dispatcher, the archivist) a question
//! that carries a one-shot reply channel, and waits on that channel, on
//! its own thread, for at most a timeout. The owner answers between two
//! events and never waits on the asker: if the asker gave up, the answer
//! is dropped. A front-door thread asking which rooms exist, a handshake
//! waiting to be admitted to its room, `/readyz` asking the archivist to
//! write: all the same three steps, so they are written once, here.
//!
//! The alternative rejected: a copy of the state behind a `Mutex` that the
//! owner keeps up to date for readers. It would cost the owner a lock on
//! every change, to serve questions that are rare.

use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

/// Why no answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The owner's channel is closed: it has stopped.
    Gone,
    /// The owner did not answer within the timeout.
    Late,
    /// The owner's queue was full, so the question was not even asked
    /// (`try_ask`).
    Busy,
}

/// Sends `owner` the question `question(reply)` and waits for the answer
/// on `reply`: `timeout` in all, a wait for room in a bounded queue
/// included.
pub fn ask<Q, A>(
    owner: &Sender<Q>,
    question: impl FnOnce(Sender<A>) -> Q,
    timeout: Duration,
) -> Result<A, Unanswered> {
    let deadline = Instant::now() + timeout;
    let (reply, answer) = crossbeam_channel::bounded(1);
    owner
        .send_deadline(question(reply), deadline)
        .map_err(|e| match e {
            SendTimeoutError::Disconnected(_) => Unanswered::Gone,
            SendTimeoutError::Timeout(_) => Unanswered::Late,
        })?;
    answer.recv_deadline(deadline).map_err(|_| Unanswered::Late)
}

/// As `ask`, but if the owner's (bounded) queue is full the question is
/// not asked at all: `Busy`, at once. For questions anyone may ask many
/// times a second, which are better refused than queued past their
/// timeout.
pub fn try_ask<Q, A>(
    owner: &Sender<Q>,
    question: impl FnOnce(Sender<A>) -> Q,
    timeout: Duration,
) -> Result<A, Unanswered> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    owner.try_send(question(reply)).map_err(|e| match e {
        TrySendError::Disconnected(_) => Unanswered::Gone,
        TrySendError::Full(_) => Unanswered::Busy,
    })?;
    answer.recv_timeout(timeout).map_err(|_| Unanswered::Late)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_that_answers_is_heard_and_one_that_stopped_is_gone() {
        let (owner, questions) = crossbeam_channel::unbounded::<Sender<u32>>();
        let answering = std::thread::spawn(move || {
            for reply in questions.iter().take(1) {
                let _ = reply.send(42);
            }
        });
        assert_eq!(ask(&owner, |reply| reply, Duration::from_secs(5)), Ok(42));
        answering.join().unwrap();
        assert_eq!(
            ask(&owner, |reply| reply, Duration::from_secs(5)),
            Err(Unanswered::Gone)
        );
    }

    #[test]
    fn a_full_queue_is_busy_to_try_ask_and_late_to_ask() {
        let (owner, _questions) = crossbeam_channel::bounded::<Sender<u32>>(1);
        let (filler, _) = crossbeam_channel::bounded(1);
        owner.send(filler).unwrap();
        let wait = Duration::from_millis(10);
        assert_eq!(try_ask(&owner, |reply| reply, wait), Err(Unanswered::Busy));
        assert_eq!(ask(&owner, |reply| reply, wait), Err(Unanswered::Late));
    }

    #[test]
    fn an_owner_that_keeps_silent_is_late() {
        let (owner, _questions) = crossbeam_channel::unbounded::<Sender<u32>>();
        let silent = ask(&owner, |reply| reply, Duration::from_millis(10));
        assert_eq!(silent, Err(Unanswered::Late));
    }
}
