//! What the reader does with one message, on the connection's own thread,
//! before the dispatcher sees anything: the rate limit (`rate_limit.rs`),
//! the JSON (`protocol`), a sign-in token (`session.rs`), and for the
//! conformance echo, the way back. The dispatcher gets only valid requests
//! and verified names; every refusal goes back to its sender alone.

use std::time::Instant;

use log::{debug, warn};

#[cfg(feature = "fault-injection")]
use super::PANIC_TRIGGER;
use super::guard::ReaderGuard;
use super::rate_limit::{RateLimiter, Verdict};
use super::session::{Refused, SignIn};
use crate::config::{Config, LOG_PAYLOAD_CHARS};
use crate::dispatcher::Event;
use crate::metrics::MessageKind;
use crate::protocol::{self, Closing, Frame, Reason, Refusal, Request, RequestKind, TextLimits};

/// What the read pump does after a message.
pub(super) enum Next {
    Go,
    /// The client has to go (its queue is full, or the dispatcher is gone).
    Stop,
    /// Close the connection, for this reason.
    Close(Closing),
}

/// Parses one text message and passes it on; a token login is checked here
/// first (`session.rs`), so the dispatcher gets only verified names.
pub(super) fn handle_text(
    guard: &ReaderGuard,
    text: &str,
    limits: TextLimits,
    sign_in: Option<&mut SignIn>,
    limiter: &mut RateLimiter,
) -> Next {
    let id = guard.id;
    debug!("conn {id}: received {}", loggable(text));
    #[cfg(feature = "fault-injection")]
    if text.contains(PANIC_TRIGGER) {
        panic!("conn {id}: fault injection: reader panic requested");
    }
    let parsed = protocol::parse_request(text, limits);
    guard.metrics.received(MessageKind::of(match &parsed {
        Ok(request) => Some(request.kind()),
        Err(refusal) => refusal.request,
    }));
    let checked = match (parsed, sign_in) {
        (
            Ok(Request::TokenLogin {
                token,
                since,
                presence,
            }),
            Some(session),
        ) => session.check(id, &token, since).map(|mut login| {
            login.presence = presence;
            Request::Login(login)
        }),
        // A login the parser refused for want of a token counts as a
        // failed sign-in too.
        (Err(refusal), Some(session)) if refusal.reason == Reason::AuthenticationFailed => {
            session.refuse(id, &refusal.details).map(Request::Login)
        }
        (Err(refusal), _) => {
            warn!(
                "conn {id}: refused ({}: {}): {}",
                refusal.reason.text(),
                refusal.details,
                loggable(text)
            );
            Err(Refused::TryAgain(refusal))
        }
        (Ok(request), _) => Ok(request),
    };
    match checked {
        Ok(request) => match guard
            .events
            .map(|e| e.send(Event::Request { conn: id, request }))
        {
            Some(Ok(())) => Next::Go,
            Some(Err(_)) | None => Next::Stop,
        },
        Err(Refused::TryAgain(refusal)) => {
            guard.metrics.refused(refusal.reason);
            if refusal.reason == Reason::AuthenticationFailed {
                // Each failed sign-in costs a token of the rate limit too.
                let _ = limiter.check(Instant::now());
            }
            reply(guard, refusal)
        }
        Err(Refused::Close) => Next::Close(Closing::SignInFailures),
    }
}

/// Applies the rate limit to one message: `None` lets it through; else
/// what the pump does after refusing it. `kind` reads what the message
/// asked for, for the refusal and its count: only when it is refused, so
/// that an allowed message is parsed once.
pub(super) fn rate_limit(
    guard: &ReaderGuard,
    limiter: &mut RateLimiter,
    kind: impl FnOnce() -> Option<RequestKind>,
    config: &Config,
) -> Option<Next> {
    match limiter.check(Instant::now()) {
        Verdict::Allow => None,
        Verdict::Refuse => {
            warn!("conn {}: message dropped: rate limit", guard.id);
            let kind = kind();
            guard.metrics.received(MessageKind::of(kind));
            let details = format!(
                "at most {} messages per second; this one was dropped",
                config.rate_limit
            );
            let refusal = Refusal::new(kind, Reason::RateLimit, details);
            guard.metrics.refused(refusal.reason);
            Some(reply(guard, refusal))
        }
        Verdict::Expel => {
            warn!("conn {}: closed: kept exceeding the rate limit", guard.id);
            Some(Next::Close(Closing::RateLimit))
        }
    }
}

/// Sends a refusal to the client; a full queue means it must go.
pub(super) fn reply(guard: &ReaderGuard, refusal: Refusal) -> Next {
    match guard.outbox.push(refusal.to_frame()) {
        Ok(()) => Next::Go,
        Err(_) => Next::Stop,
    }
}

/// Sends a message back to its sender, on the `--conformance-echo` path:
/// into its own outbox, for its writer, like every frame it is sent.
pub(super) fn echo(guard: &ReaderGuard, frame: Frame) -> Next {
    match guard.outbox.push(frame) {
        Ok(()) => Next::Go,
        Err(_) => {
            warn!("conn {}: closed: echo queue full", guard.id);
            Next::Close(Closing::TooSlow)
        }
    }
}

/// A client's message as it may appear in the log: cut short, and never a
/// token. A message that could carry one is not quoted at all: one that
/// names a token in any case (`"Token"`), one with a `\u` escape (which can
/// spell the word), and one with what looks like a JWT (`eyJ`, the start of
/// a base64url JSON header), whatever its field is called.
fn loggable(text: &str) -> &str {
    let could_hold_a_token =
        text.to_ascii_lowercase().contains("token") || text.contains("\\u") || text.contains("eyJ");
    if could_hold_a_token {
        "(a message that could hold a token; not shown)"
    } else {
        protocol::truncate(text, LOG_PAYLOAD_CHARS)
    }
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn no_spelling_of_a_token_is_quoted_in_the_log() {
        for text in [
            r#"{"type":"login","token":"abc"}"#,
            r#"{"type":"login","TOKEN":"abc"}"#,
            r#"{"type":"login","\u0074oken":"abc"}"#,
            r#"{"type":"login","jwt":"eyJhbGciOiJIUzI1NiJ9.e30.sig"}"#,
        ] {
            assert!(loggable(text).contains("not shown"), "{text}");
        }
        let chat = r#"{"type":"chat","text":"hello"}"#;
        assert_eq!(loggable(chat), chat);
    }
}
