//! Label values: every label a metric here carries, as an enum.
//!
//! A label's value comes from a type with a fixed list of values
//! (`LabelValue::ALL`), never from a string a client sent, so no client can
//! make the server invent time series. The protocol's `Reason` and
//! `CloseReason` carry their label text themselves (and their `ALL`); the
//! kinds only metrics needs (`MessageKind`, `HandshakeStatus`, `TlsFailure`) are
//! defined here. The alternative, labels as strings matched from messages,
//! would let a reworded message silently move or lose its count.
//!
//! `Labelled` is the counter family built on them. prometheus-client's
//! `Family` keeps its children in a map behind a read-write lock; `Labelled`
//! creates every child up front and keeps it in an array too, so an
//! increment is an index and an atomic add, and the map's lock is taken only
//! by a scrape.

use std::marker::PhantomData;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Serialize, Serializer};

use crate::net::HandshakeFailure;
use crate::protocol::{CloseReason, Reason, RequestKind};

/// A label value with a fixed set of possibilities.
pub trait LabelValue: Copy + 'static {
    /// Every value, in declaration order (`index` is the position here).
    const ALL: &'static [Self];
    /// The label's name in the exposition (`reason`, `type`, …).
    const KEY: &'static str;
    /// The value as it appears in the exposition.
    fn label(self) -> &'static str;
    /// Position in `ALL`.
    fn index(self) -> usize;
}

/// The `type` of a message a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Login,
    Chat,
    Disconnect,
    /// A moderation command (delete, edit, mute, kick, ban, room_mode, …).
    Moderation,
    /// Anything else: an unknown type, invalid JSON, a binary message.
    Other,
}

impl MessageKind {
    /// From the type a message claims (`protocol::request_kind`, or a
    /// refusal's `request`).
    pub fn of(request: Option<RequestKind>) -> MessageKind {
        match request {
            Some(RequestKind::Login) => MessageKind::Login,
            Some(RequestKind::Chat) => MessageKind::Chat,
            Some(RequestKind::Disconnect) => MessageKind::Disconnect,
            Some(_) => MessageKind::Moderation,
            None => MessageKind::Other,
        }
    }
}

impl LabelValue for MessageKind {
    const ALL: &'static [Self] = &[
        Self::Login,
        Self::Chat,
        Self::Disconnect,
        Self::Moderation,
        Self::Other,
    ];
    const KEY: &'static str = "type";
    fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Chat => "chat",
            Self::Disconnect => "disconnect",
            Self::Moderation => "moderation",
            Self::Other => "other",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// A refusal is counted under its `error` text (`protocol::Reason`).
impl LabelValue for Reason {
    const ALL: &'static [Self] = Reason::ALL;
    const KEY: &'static str = "error";
    fn label(self) -> &'static str {
        self.text()
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// A closed connection is counted under its reason's label.
impl LabelValue for CloseReason {
    const ALL: &'static [Self] = CloseReason::ALL;
    const KEY: &'static str = "reason";
    fn label(self) -> &'static str {
        CloseReason::label(self)
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// In JSON (`/api/stats`), a reason is its label.
impl Serialize for CloseReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

/// The HTTP status a WebSocket handshake was refused with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// 400: not a valid handshake.
    BadRequest,
    /// 403: an origin not allowed.
    Forbidden,
    /// 404: no such room.
    NotFound,
    /// 426: a WebSocket version other than 13.
    UpgradeRequired,
    /// 429: too many connections from one address.
    TooManyRequests,
    /// 503: the server is full (connections or rooms).
    Unavailable,
    Other,
}

impl HandshakeStatus {
    pub fn from_code(code: u16) -> HandshakeStatus {
        match code {
            400 => Self::BadRequest,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            426 => Self::UpgradeRequired,
            429 => Self::TooManyRequests,
            503 => Self::Unavailable,
            _ => Self::Other,
        }
    }

    /// From a complete HTTP response (`HTTP/1.1 403 Forbidden…`).
    pub fn from_response(response: &[u8]) -> HandshakeStatus {
        let code = response
            .get(9..12)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0);
        Self::from_code(code)
    }
}

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// Not done within `--handshake-timeout`.
    Timeout,
    /// The client closed the socket (or it failed) mid-handshake.
    Closed,
    /// The client spoke plain http (or anything else) to the TLS port.
    NotTls,
    /// The client refused the handshake with an alert: mostly, it does not
    /// trust the certificate.
    ClientAlert,
    /// No common version or cipher suite, or a malformed message.
    Protocol,
    /// The server was shutting down.
    Shutdown,
}

impl From<&HandshakeFailure> for TlsFailure {
    fn from(failure: &HandshakeFailure) -> TlsFailure {
        match failure {
            HandshakeFailure::TimedOut => Self::Timeout,
            HandshakeFailure::Closed | HandshakeFailure::Io(_) => Self::Closed,
            HandshakeFailure::NotTls => Self::NotTls,
            HandshakeFailure::Refused(rustls::Error::AlertReceived(_)) => Self::ClientAlert,
            HandshakeFailure::Refused(_) => Self::Protocol,
            HandshakeFailure::ShuttingDown => Self::Shutdown,
        }
    }
}

impl LabelValue for TlsFailure {
    const ALL: &'static [Self] = &[
        Self::Timeout,
        Self::Closed,
        Self::NotTls,
        Self::ClientAlert,
        Self::Protocol,
        Self::Shutdown,
    ];
    const KEY: &'static str = "reason";
    fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::NotTls => "not_tls",
            Self::ClientAlert => "client_alert",
            Self::Protocol => "protocol",
            Self::Shutdown => "shutdown",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

impl LabelValue for HandshakeStatus {
    const ALL: &'static [Self] = &[
        Self::BadRequest,
        Self::Forbidden,
        Self::NotFound,
        Self::UpgradeRequired,
        Self::TooManyRequests,
        Self::Unavailable,
        Self::Other,
    ];
    const KEY: &'static str = "status";
    fn label(self) -> &'static str {
        match self {
            Self::BadRequest => "400",
            Self::Forbidden => "403",
            Self::NotFound => "404",
            Self::UpgradeRequired => "426",
            Self::TooManyRequests => "429",
            Self::Unavailable => "503",
            Self::Other => "other",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

type LabelSet = [(&'static str, &'static str); 1];

/// A counter per value of one label, every value created up front so that
/// the exposition lists them all from the start (at 0) and an increment
/// never touches the family's map.
#[derive(Debug)]
pub(super) struct Labelled<T: LabelValue> {
    /// What the registry encodes.
    pub(super) family: Family<LabelSet, Counter>,
    /// The family's counters, in `T::ALL` order; each shares its atomic with
    /// the one in the family.
    children: Box<[Counter]>,
    _values: PhantomData<T>,
}

impl<T: LabelValue> Labelled<T> {
    pub(super) fn new() -> Self {
        let family = Family::<LabelSet, Counter>::default();
        let children = T::ALL
            .iter()
            .map(|value| family.get_or_create(&[(T::KEY, value.label())]).clone())
            .collect();
        Labelled {
            family,
            children,
            _values: PhantomData,
        }
    }

    pub(super) fn inc(&self, value: T) {
        self.children[value.index()].inc();
    }

    pub(super) fn get(&self, value: T) -> u64 {
        self.children[value.index()].get()
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    fn in_order<T: LabelValue + PartialEq + fmt::Debug>() {
        for (i, value) in T::ALL.iter().enumerate() {
            assert_eq!(value.index(), i, "{value:?} is out of place in ALL");
        }
    }

    #[test]
    fn every_label_list_is_in_declaration_order() {
        in_order::<MessageKind>();
        in_order::<Reason>();
        in_order::<CloseReason>();
        in_order::<HandshakeStatus>();
    }

    #[test]
    fn handshake_status_is_read_from_the_response() {
        let response = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            HandshakeStatus::from_response(response),
            HandshakeStatus::Forbidden
        );
        assert_eq!(
            HandshakeStatus::from_response(b"junk"),
            HandshakeStatus::Other
        );
    }
}
