//! A refused token, and the sentence that says why. Every refusal names the
//! one check that failed ("token expired", "wrong issuer (iss)") as an
//! `AuthFailure`, for code to act on, and in words fit to send back to the
//! client, who can fix the token from them. The words never quote the token
//! (it is a credential) and quote the sender's header only briefly.
//!
//! jsonwebtoken reports its own refusals as an `ErrorKind`; `refusal` turns
//! each into this server's words here, in one table, rather than passing
//! the crate's messages on: many of those are just the variant's name
//! ("ExpiredSignature"), written for programmers, not for the client.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;

/// Which check a token failed; `AuthError::details` says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The login carried no token.
    NoToken,
    /// Not three base64url parts of JSON.
    Malformed,
    /// The header names another algorithm than the server's (or `none`).
    Algorithm,
    /// The signature is not the server key's over this header and payload.
    Signature,
    /// `exp` (plus the leeway) is in the past.
    Expired,
    /// `nbf` (minus the leeway) is in the future.
    NotYetValid,
    /// `iss` missing or not the configured issuer.
    Issuer,
    /// `aud` missing, or not the configured audience.
    Audience,
    /// No `exp`, or not a number.
    MissingExpiry,
    /// No `sub`, or not a valid username.
    Subject,
    /// `follows` is not a list of usernames.
    Follows,
    /// `rooms` is not a list of room names.
    Rooms,
    /// `exp` is further from `iat` (or from now) than the server allows.
    TooLong,
    /// A valid token, but its `rooms` claim does not name the room asked for.
    RoomClosed,
}

/// A refused token: which check failed, in a sentence fit to send back to
/// the client. It never contains the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    failure: AuthFailure,
    details: String,
}

impl AuthError {
    pub(super) fn new(failure: AuthFailure, details: impl Into<String>) -> AuthError {
        AuthError {
            failure,
            details: details.into(),
        }
    }

    /// The refusal of a login that carried no token at all.
    pub fn no_token() -> AuthError {
        AuthError::new(
            AuthFailure::NoToken,
            "no token: this server needs a signed token to sign in",
        )
    }

    /// The refusal of a valid token in a room its `rooms` claim leaves out.
    pub fn room_closed(room: &str) -> AuthError {
        AuthError::new(
            AuthFailure::RoomClosed,
            format!("this token does not open room {room}"),
        )
    }

    pub fn failure(&self) -> AuthFailure {
        self.failure
    }

    /// Which check failed, e.g. "token expired".
    pub fn details(&self) -> &str {
        &self.details
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.details)
    }
}

impl std::error::Error for AuthError {}

/// Words for each of jsonwebtoken's refusals, from a verifier that accepts
/// only `algorithm` and expects an audience (`aud`) or not.
pub(super) fn refusal(kind: &ErrorKind, algorithm: &str, audience_expected: bool) -> AuthError {
    use AuthFailure as F;
    match kind {
        ErrorKind::InvalidSignature => AuthError::new(
            F::Signature,
            "bad signature: the token was not signed with this server's key, or was altered",
        ),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::new(
            F::Algorithm,
            format!("wrong algorithm: this server accepts only {algorithm}"),
        ),
        ErrorKind::ExpiredSignature => AuthError::new(F::Expired, "token expired"),
        ErrorKind::ImmatureSignature => AuthError::new(
            F::NotYetValid,
            "token not valid yet: its nbf (not before) is in the future",
        ),
        ErrorKind::InvalidIssuer => AuthError::new(F::Issuer, "wrong issuer (iss)"),
        ErrorKind::InvalidAudience if !audience_expected => AuthError::new(
            F::Audience,
            "wrong audience: the token names an audience (aud) and this server expects none",
        ),
        ErrorKind::InvalidAudience => AuthError::new(F::Audience, "wrong audience (aud)"),
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => AuthError::new(F::Issuer, "missing issuer (iss)"),
            "aud" => AuthError::new(F::Audience, "missing audience (aud)"),
            _ => AuthError::new(
                F::MissingExpiry,
                "missing expiry: a token must carry exp, in seconds since 1970",
            ),
        },
        ErrorKind::InvalidClaimFormat(claim) if claim == "exp" => AuthError::new(
            F::MissingExpiry,
            "missing expiry: a token must carry exp, in seconds since 1970",
        ),
        ErrorKind::InvalidClaimFormat(claim) => {
            malformed(format!("the claim {claim} is not a number"))
        }
        ErrorKind::Base64(_) => malformed("a part is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            malformed("the header or claims are not JSON of the expected shape")
        }
        // The signature could not even be checked (a key or signature
        // of the wrong shape): as far as the client goes, it is bad.
        _ => AuthError::new(
            F::Signature,
            "bad signature: the token could not be checked with this server's key",
        ),
    }
}

pub(super) fn malformed(why: impl fmt::Display) -> AuthError {
    AuthError::new(AuthFailure::Malformed, format!("malformed token: {why}"))
}
