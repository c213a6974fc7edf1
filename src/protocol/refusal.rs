//! Why the server says no: to one message (`Refusal`, sent back as an
//! `error` message), and to a whole connection (`Closing`, sent as a close
//! frame).
//!
//! Each reason is a variant, and the variant carries everything that used
//! to be decided by comparing strings: the text on the wire, the metrics
//! label it is counted under, the close code. A typo is a compile error,
//! not a refusal silently counted as "other". The alternative rejected:
//! string constants shared by the modules that send and count them, which
//! still let anyone send a text no one counts.

use std::borrow::Cow;

use tungstenite::protocol::frame::coding::CloseCode;

use super::{Frame, json_frame};

/// The message types a client may send, as a refusal names the one it
/// refuses (so a client can show the error beside the right input): the
/// tutorial's three, and the moderation commands (`moderation.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Login,
    Chat,
    Disconnect,
    Delete,
    Edit,
    Mute,
    Unmute,
    Kick,
    Ban,
    Unban,
    RoomMode,
}

impl RequestKind {
    /// The `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Login => "login",
            RequestKind::Chat => "chat",
            RequestKind::Disconnect => "disconnect",
            RequestKind::Delete => "delete",
            RequestKind::Edit => "edit",
            RequestKind::Mute => "mute",
            RequestKind::Unmute => "unmute",
            RequestKind::Kick => "kick",
            RequestKind::Ban => "ban",
            RequestKind::Unban => "unban",
            RequestKind::RoomMode => "room_mode",
        }
    }

    /// The kind a `type` names, if it is one.
    pub fn named(kind: &str) -> Option<RequestKind> {
        Some(match kind {
            "login" => RequestKind::Login,
            "chat" => RequestKind::Chat,
            "disconnect" => RequestKind::Disconnect,
            "delete" => RequestKind::Delete,
            "edit" => RequestKind::Edit,
            "mute" => RequestKind::Mute,
            "unmute" => RequestKind::Unmute,
            "kick" => RequestKind::Kick,
            "ban" => RequestKind::Ban,
            "unban" => RequestKind::Unban,
            "room_mode" => RequestKind::RoomMode,
            _ => return None,
        })
    }
}

/// Why a message was refused: the `error` of the refusal sent back, which
/// is also the label it is counted under in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    DecodingJson,
    DecodingMessage,
    UnknownType,
    InvalidUsername,
    UsernameTaken,
    NotLoggedIn,
    InvalidChat,
    EmptyMessage,
    MessageTooLong,
    MessageTooLarge,
    RateLimit,
    Binary,
    AuthenticationFailed,
    InvalidSince,
    LoginInProgress,
    ChatUnavailable,
    ChatNotStored,
    TooManyRooms,
    InvalidCommand,
    SignInRequired,
    ModerationOff,
    NotAllowed,
    UnknownMessage,
    UnknownUser,
    EditWindowPassed,
    Muted,
    LectureMode,
    Banned,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: &'static [Reason] = &[
        Reason::DecodingJson,
        Reason::DecodingMessage,
        Reason::UnknownType,
        Reason::InvalidUsername,
        Reason::UsernameTaken,
        Reason::NotLoggedIn,
        Reason::InvalidChat,
        Reason::EmptyMessage,
        Reason::MessageTooLong,
        Reason::MessageTooLarge,
        Reason::RateLimit,
        Reason::Binary,
        Reason::AuthenticationFailed,
        Reason::InvalidSince,
        Reason::LoginInProgress,
        Reason::ChatUnavailable,
        Reason::ChatNotStored,
        Reason::TooManyRooms,
        Reason::InvalidCommand,
        Reason::SignInRequired,
        Reason::ModerationOff,
        Reason::NotAllowed,
        Reason::UnknownMessage,
        Reason::UnknownUser,
        Reason::EditWindowPassed,
        Reason::Muted,
        Reason::LectureMode,
        Reason::Banned,
    ];

    /// The `error` text on the wire: a short sentence clients may match on
    /// (the tutorial's client shows it), so it never changes.
    pub fn text(self) -> &'static str {
        match self {
            Reason::DecodingJson => "error decoding JSON",
            Reason::DecodingMessage => "error decoding message",
            Reason::UnknownType => "unknown message type",
            Reason::InvalidUsername => "invalid username",
            Reason::UsernameTaken => "username is taken",
            Reason::NotLoggedIn => "not logged in",
            Reason::InvalidChat => "invalid chat message",
            Reason::EmptyMessage => "empty message",
            Reason::MessageTooLong => "message too long",
            Reason::MessageTooLarge => "message too large",
            Reason::RateLimit => "rate limit exceeded",
            Reason::Binary => "binary messages are not supported",
            Reason::AuthenticationFailed => "authentication failed",
            Reason::InvalidSince => "invalid since",
            Reason::LoginInProgress => "login in progress",
            Reason::ChatUnavailable => "chat is briefly unavailable",
            Reason::ChatNotStored => "chat not stored",
            Reason::TooManyRooms => "too many rooms",
            Reason::InvalidCommand => "invalid command",
            Reason::SignInRequired => "sign-in required",
            Reason::ModerationOff => "moderation is off",
            Reason::NotAllowed => "not allowed",
            Reason::UnknownMessage => "unknown message",
            Reason::UnknownUser => "unknown user",
            Reason::EditWindowPassed => "edit window passed",
            Reason::Muted => "you are muted",
            Reason::LectureMode => "lecture mode",
            Reason::Banned => "you are banned",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// A refusal sent back to the one client that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    /// The longer explanation.
    pub details: String,
    /// The `type` of the refused message; `None` when it was not even
    /// readable.
    pub request: Option<RequestKind>,
}

impl Refusal {
    pub fn new(request: Option<RequestKind>, reason: Reason, details: impl Into<String>) -> Self {
        Refusal {
            reason,
            details: details.into(),
            request,
        }
    }

    /// The frame `{"type":"error","error":…,"details":…,"request":…}`.
    pub fn to_frame(&self) -> Frame {
        #[derive(serde::Serialize)]
        struct ErrorMessage<'a> {
            r#type: &'static str,
            error: &'static str,
            details: &'a str,
            request: Option<&'static str>,
        }
        json_frame(&ErrorMessage {
            r#type: "error",
            error: self.reason.text(),
            details: &self.details,
            request: self.request.map(RequestKind::as_str),
        })
    }
}

/// Why a connection ended, as `/metrics` counts it and `/inside` lists
/// drops. Each connection is counted once, by the thread that sees it end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed, or its socket went away.
    ClientClose,
    /// Its outbox filled: it was not reading (close 1008).
    SlowConsumer,
    /// Silent past the idle timeout (close 1001).
    Idle,
    /// Kept exceeding the rate limit (close 1008).
    RateLimit,
    /// Sent a message over the size limit (close 1009).
    Size,
    /// Broke the WebSocket protocol or sent invalid UTF-8 (close 1002, 1007).
    ProtocolError,
    /// The server is stopping (close 1001).
    Shutdown,
    /// Did not log in within `--login-timeout` (close 1008): a socket held
    /// open for nothing, so a flood of them is seen as one.
    LoginTimeout,
    /// Anything else: an expired token, failed sign-ins, an internal
    /// error, a panic.
    Other,
}

impl CloseReason {
    /// Every reason, in declaration order.
    pub const ALL: &'static [CloseReason] = &[
        CloseReason::ClientClose,
        CloseReason::SlowConsumer,
        CloseReason::Idle,
        CloseReason::RateLimit,
        CloseReason::Size,
        CloseReason::ProtocolError,
        CloseReason::Shutdown,
        CloseReason::LoginTimeout,
        CloseReason::Other,
    ];

    /// Whether the server ended the connection against the client's will:
    /// what the live view lists as a drop.
    pub fn is_drop(self) -> bool {
        !matches!(self, CloseReason::ClientClose | CloseReason::Shutdown)
    }

    /// Its label in `/metrics` and `/api/stats`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Idle => "idle",
            CloseReason::RateLimit => "rate_limit",
            CloseReason::Size => "size",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::Other => "other",
        }
    }
}

/// Why the server closes a connection itself: the close frame's code and
/// reason, and how the close is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// Silent past the idle timeout.
    Idle,
    /// Kept sending over the rate limit.
    RateLimit,
    /// A message over the size limit (`limit` bytes).
    TooBig { limit: usize },
    /// A text message that is not UTF-8.
    NotUtf8,
    /// Another breach of RFC 6455, in tungstenite's words.
    Protocol(String),
    /// The sign-in token ran out.
    TokenExpired,
    /// Too many refused sign-ins in a row.
    SignInFailures,
    /// Not logged in within `--login-timeout`.
    LoginTimeout,
    /// Its outbox filled: it is not reading.
    TooSlow,
    /// The server is stopping.
    ShuttingDown,
    /// Something went wrong on the server's side.
    Internal,
    /// A moderator removed the user from the room, saying why.
    Kicked(String),
    /// A moderator banned the user from the room, saying why and until when.
    Banned(String),
}

/// The close codes of moderation, from the range RFC 6455 leaves to
/// applications (4000-4999): a page tells a kick from a dropped line by
/// them, and does not reconnect.
pub const CLOSE_KICKED: u16 = 4001;
pub const CLOSE_BANNED: u16 = 4003;

impl Closing {
    /// The close code (RFC 6455, section 7.4.1).
    pub fn code(&self) -> CloseCode {
        match self {
            Closing::Idle | Closing::ShuttingDown => CloseCode::Away,
            Closing::RateLimit
            | Closing::TokenExpired
            | Closing::SignInFailures
            | Closing::LoginTimeout
            | Closing::TooSlow => CloseCode::Policy,
            Closing::TooBig { .. } => CloseCode::Size,
            Closing::NotUtf8 => CloseCode::Invalid,
            Closing::Protocol(_) => CloseCode::Protocol,
            Closing::Internal => CloseCode::Error,
            Closing::Kicked(_) => CloseCode::from(CLOSE_KICKED),
            Closing::Banned(_) => CloseCode::from(CLOSE_BANNED),
        }
    }

    /// The close frame's reason text.
    pub fn reason(&self) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            Closing::Idle => "idle timeout",
            Closing::RateLimit => "rate limit exceeded",
            Closing::TooBig { limit } => {
                return Cow::Owned(format!("message too big: limit is {limit} bytes"));
            }
            Closing::NotUtf8 => "text message is not valid UTF-8",
            Closing::Protocol(why) | Closing::Kicked(why) | Closing::Banned(why) => {
                return Cow::Borrowed(why);
            }
            Closing::TokenExpired => "token expired",
            Closing::SignInFailures => "too many failed sign-ins",
            Closing::LoginTimeout => "login timeout",
            Closing::TooSlow => "outbound queue full: client is reading too slowly",
            Closing::ShuttingDown => "server shutting down",
            Closing::Internal => "internal error",
        })
    }

    /// How a connection closed so is counted.
    pub fn counted_as(&self) -> CloseReason {
        match self {
            Closing::Idle => CloseReason::Idle,
            Closing::RateLimit => CloseReason::RateLimit,
            Closing::TooBig { .. } => CloseReason::Size,
            Closing::NotUtf8 | Closing::Protocol(_) => CloseReason::ProtocolError,
            Closing::TooSlow => CloseReason::SlowConsumer,
            Closing::ShuttingDown => CloseReason::Shutdown,
            Closing::LoginTimeout => CloseReason::LoginTimeout,
            Closing::TokenExpired
            | Closing::SignInFailures
            | Closing::Internal
            | Closing::Kicked(_)
            | Closing::Banned(_) => CloseReason::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_once_in_order() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
    }

    #[test]
    fn a_refusal_frame_carries_the_reason_s_text() {
        let refusal = Refusal::new(Some(RequestKind::Login), Reason::UsernameTaken, "taken");
        let frame = refusal.to_frame();
        let text = std::str::from_utf8(&frame[2..]).unwrap();
        assert_eq!(
            text,
            r#"{"type":"error","error":"username is taken","details":"taken","request":"login"}"#
        );
    }

    #[test]
    fn a_close_reason_fits_a_close_frame() {
        // 125 bytes of payload, 2 of them the code.
        for closing in [
            Closing::Idle,
            Closing::RateLimit,
            Closing::TooBig { limit: usize::MAX },
            Closing::NotUtf8,
            Closing::TokenExpired,
            Closing::SignInFailures,
            Closing::LoginTimeout,
            Closing::TooSlow,
            Closing::ShuttingDown,
            Closing::Internal,
        ] {
            assert!(closing.reason().len() <= 123, "{closing:?}");
        }
    }
}
