//! Who may read what the JSON API answers: with sign-in on, the rooms and
//! their history are for signed-in users only, as the chat itself is.
//!
//! A request proves who it is the way the OAuth bearer-token standard (RFC
//! 6750) says: `Authorization: Bearer <token>`, the same token a login
//! sends, checked by the same `AuthConfig::verify` (signature, `exp` and
//! `nbf`, `iss` and `aud`, lifetime). Without one, or with a bad one, the
//! answer is `401 Unauthorized` with a `WWW-Authenticate: Bearer` header and
//! a short reason; a valid token for a room its `rooms` claim leaves out
//! gets `403 Forbidden`. The reason never quotes the token, and neither
//! does the log.
//!
//! A token in the URL (`?access_token=…`) is not accepted, though RFC 6750
//! allows it: URLs end up in access logs, proxies' logs and the browser's
//! history, where a credential must not. Such a request is told why it was
//! refused. The check runs on the connection's own thread (it is pure
//! computation on an immutable key), before any owner is asked anything.

use log::info;

use super::request::RequestHead;
use super::response::response;
use crate::auth::{AuthConfig, AuthError, Identity};
use crate::config::AUTH_REASON_HEADER_CHARS;

/// The realm named in every challenge.
const REALM: &str = "threadchat";

/// What a request carries to say who it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The `Authorization` header's value, if any.
    authorization: Option<&'a str>,
    /// Whether the URL's query names a token (which is not accepted).
    token_in_url: bool,
}

impl<'a> Credentials<'a> {
    /// The credentials in a request's head.
    pub fn of(head: &'a RequestHead) -> Credentials<'a> {
        let query = head
            .path
            .split('#')
            .next()
            .and_then(|path| path.split_once('?'))
            .map_or("", |(_, query)| query);
        let token_in_url = query.split('&').any(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            key.eq_ignore_ascii_case("access_token") || key.eq_ignore_ascii_case("token")
        });
        Credentials {
            authorization: head.header("authorization"),
            token_in_url,
        }
    }

    /// The bearer token of the `Authorization` header (the scheme matched
    /// case-insensitively, as RFC 7235 says), if it has one.
    pub(super) fn bearer(&self) -> Option<&'a str> {
        let (scheme, token) = self.authorization?.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }
}

/// Who a request reads as.
#[derive(Debug)]
pub enum Reader {
    /// Sign-in is off: anyone reads every room.
    Anyone,
    /// The holder of a valid token: the rooms it opens.
    Signed(Identity),
}

impl Reader {
    /// Whether this reader may see room `room` and its history.
    pub fn may_read(&self, room: &str) -> bool {
        match self {
            Reader::Anyone => true,
            Reader::Signed(identity) => identity.opens(room),
        }
    }
}

/// Who the request reads as, or the `401` that refuses it: with sign-in
/// off (`auth` is `None`) everyone may read; with it on, only the holder of
/// a valid bearer token. `what` names the endpoint in the log line.
pub fn reader(
    credentials: &Credentials,
    auth: Option<&AuthConfig>,
    what: &str,
    include_body: bool,
) -> Result<Reader, Vec<u8>> {
    let Some(auth) = auth else {
        return Ok(Reader::Anyone);
    };
    let Some(token) = credentials.bearer() else {
        let why = if credentials.token_in_url {
            "a token in the URL is not accepted (URLs end up in logs): \
             send it in an Authorization: Bearer header"
        } else {
            "sign-in is on: send your token in an Authorization: Bearer header"
        };
        info!("{what}: refused: no bearer token");
        let challenge = format!("Bearer realm=\"{REALM}\"");
        return Err(refusal("401 Unauthorized", &challenge, why, include_body));
    };
    auth.verify(token).map(Reader::Signed).map_err(|e| {
        info!("{what}: refused: {}", e.details());
        let challenge = challenge("invalid_token", &e);
        refusal("401 Unauthorized", &challenge, e.details(), include_body)
    })
}

/// A `401` or `403` with a challenge naming only an error code (for the
/// moderation API, whose reasons are its own).
pub(super) fn challenged(status: &str, error: &str, why: &str) -> Vec<u8> {
    let challenge = format!("Bearer realm=\"{REALM}\", error=\"{error}\"");
    refusal(status, &challenge, why, true)
}

/// The `403` for a valid token whose `rooms` claim leaves `room` out.
pub fn room_closed(room: &str, what: &str, include_body: bool) -> Vec<u8> {
    let e = AuthError::room_closed(room);
    info!("{what}: refused: {}", e.details());
    let challenge = challenge("insufficient_scope", &e);
    refusal("403 Forbidden", &challenge, e.details(), include_body)
}

/// A `WWW-Authenticate` challenge with an error code and its reason, the
/// reason cut to what a quoted header value may hold (printable ASCII
/// without quotes or backslashes, RFC 6750 section 3), so that no text in
/// it can end the header early.
fn challenge(error: &str, e: &AuthError) -> String {
    let reason: String = e
        .details()
        .chars()
        .take(AUTH_REASON_HEADER_CHARS)
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect();
    format!("Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{reason}\"")
}

fn refusal(status: &str, challenge: &str, why: &str, include_body: bool) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        &[
            ("WWW-Authenticate", challenge),
            ("Cache-Control", "no-store"),
        ],
        format!("{why}\n").as_bytes(),
        include_body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request_head;

    fn head(request: &str) -> RequestHead {
        parse_request_head(request.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn the_bearer_token_comes_from_the_authorization_header_only() {
        let with = head("GET /api/rooms HTTP/1.1\r\nAuthorization: bearer  abc.def.ghi \r\n\r\n");
        assert_eq!(Credentials::of(&with).bearer(), Some("abc.def.ghi"));
        let basic = head("GET /api/rooms HTTP/1.1\r\nAuthorization: Basic dXNlcg==\r\n\r\n");
        assert_eq!(Credentials::of(&basic).bearer(), None);
        let empty = head("GET /api/rooms HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n");
        assert_eq!(Credentials::of(&empty).bearer(), None);
        let in_url = head("GET /api/rooms?access_token=abc HTTP/1.1\r\n\r\n");
        let credentials = Credentials::of(&in_url);
        assert_eq!(credentials.bearer(), None);
        assert!(credentials.token_in_url);
        assert!(!Credentials::of(&head("GET /api/rooms?before=3 HTTP/1.1\r\n\r\n")).token_in_url);
    }

    #[test]
    fn a_challenge_cannot_be_broken_out_of() {
        let e = AuthError::room_closed("a\"b\\c\r\nSet-Cookie: x");
        let value = challenge("invalid_token", &e);
        assert!(!value.contains('\r') && !value.contains('\n'), "{value}");
        assert_eq!(value.matches('"').count(), 6, "{value}");
    }
}
