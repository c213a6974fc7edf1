//! Sign-in with JSON Web Tokens: checking a token a client sends, and making
//! one for `threadchat token`.
//!
//! A token is `header.payload.signature`, each part base64url; the payload's
//! claims say who the holder is (`sub`, the username), until when (`exp`),
//! and optionally from when (`nbf`), since when (`iat`), for whom (`aud`),
//! from whom (`iss`), which users they follow (`follows`) and which rooms
//! they may enter (`rooms`). The cryptography (HMAC-SHA256, RSA
//! PKCS#1 v1.5 with SHA-256, Ed25519) and the standard claim checks are the
//! `jsonwebtoken` crate's; this module decides what the server accepts and
//! turns each refusal into a short sentence naming the check that failed.
//!
//! The one rule everything here is shaped by: **the algorithm comes from the
//! server's key, never from the token.** The token's header says which
//! algorithm signed it, and it is the attacker who writes the header. A
//! server that believed it would accept `"alg":"none"` (no signature at all),
//! or an `HS256` token whose "secret" is the server's public RSA key, which
//! anyone can read ("algorithm confusion"). So an `AuthConfig` holds exactly
//! one algorithm, fixed when it is built (HS256 for a secret; RS256 or EdDSA
//! from the public key's type), and a token naming any other is refused
//! before its signature is looked at. Rejected: a list of accepted
//! algorithms, which is how the confusion attack gets in, and verifying by
//! hand, where constant-time comparison and RSA padding are easy to get
//! subtly wrong.
//!
//! Verification is pure computation (microseconds for HS256, tens of them for
//! RS256 and EdDSA) on an immutable `AuthConfig`, so any thread may call
//! `verify` at once; the connection's reader thread is the natural place,
//! which keeps the dispatcher free of it.
//!
//! Secrets and tokens are credentials: nothing here logs them, and every type
//! holding one (`Secret`, `Token`, `AuthConfig`) prints `<redacted>` in its
//! `Debug` form, so that a stray `{:?}` in a log line cannot leak them.
//!
//! The parts, one role a file: this one is the verifier (`AuthConfig`, the
//! header check); `claims.rs` is what a token must say beyond the standard
//! checks (and how long it may live); `failure.rs` is the refusals and
//! their sentences; `keys.rs` is what a key is and which algorithm it
//! means; `mint.rs` makes tokens; `secret.rs` finds the secret the operator
//! gave and builds the verifier from the flags; `operator.rs` is the
//! operator's own token, for the moderation API.

mod claims;
mod failure;
mod keys;
mod mint;
mod operator;
mod secret;

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{ALG_QUOTE_CHARS, DEFAULT_JWT_MAX_LIFETIME, JWT_LEEWAY};
use claims::{Bounds, identity_from};
use failure::{malformed, refusal};
use keys::{algorithm_name, check_secret};

pub use crate::config::{Secret, parse_ttl};
pub use failure::{AuthError, AuthFailure};
pub use mint::{Grant, mint, mint_grant};
pub use operator::OperatorToken;
pub use secret::{JWT_SECRET_ENV, from_config, secret_from, secret_of};

/// A token as a client sent it, for code that has to keep one around (a
/// parsed login request). Its `Debug` form never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(text: String) -> Token {
        Token(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Who a valid token says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim, checked and trimmed like any username.
    pub username: String,
    /// The `exp` claim: after this (plus the leeway) the session ends.
    pub expires_at: SystemTime,
    /// The `follows` claim, if the token has one.
    pub follows: Option<Vec<String>>,
    /// The `rooms` claim (room names, lower case): the only rooms the token
    /// opens. `None` (no claim) opens every room.
    pub rooms: Option<Vec<String>>,
    /// The `role` claim: `Moderator` for `"moderator"`, else `Member`.
    pub role: crate::protocol::Role,
}

impl Identity {
    /// Whether the token opens `room` (a valid room name, lower case): to
    /// sign in there, and to read its history.
    pub fn opens(&self, room: &str) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|r| r == room))
    }
}

/// What the server accepts: one key, the one algorithm that key implies, and
/// the claims it insists on. Immutable once built, cheap to clone.
#[derive(Clone)]
pub struct AuthConfig {
    /// The HS256 secret or the public key; the only thing here that is
    /// secret (for HS256), hence the hand-written `Debug`.
    key: DecodingKey,
    /// Fixed by the kind of key, never by a token.
    algorithm: Algorithm,
    /// `iss` a token must carry, if set.
    issuer: Option<String>,
    /// `aud` a token must carry, if set.
    audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (whole seconds count).
    leeway: Duration,
    /// Longest lifetime a token may have, from its `iat` or from now
    /// (`claims.rs`).
    max_lifetime: Duration,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm_name())
            .field("key", &format_args!("<redacted>"))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl AuthConfig {
    /// Tokens signed with HMAC-SHA256 and this shared secret, which must
    /// be at least `MIN_JWT_SECRET_BYTES` long (a shorter one is refused).
    pub fn hs256(secret: &[u8]) -> Result<AuthConfig, String> {
        check_secret(secret)?;
        Ok(AuthConfig::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// Tokens signed by the holder of the private half of this public key
    /// (PEM, `BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`): an RSA key (at
    /// least `MIN_RSA_KEY_BITS`) means RS256, an Ed25519 key means EdDSA.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<AuthConfig, String> {
        let (key, algorithm) = keys::public_key(pem)?;
        Ok(AuthConfig::new(key, algorithm))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> AuthConfig {
        AuthConfig {
            key,
            algorithm,
            issuer: None,
            audience: None,
            leeway: JWT_LEEWAY,
            max_lifetime: DEFAULT_JWT_MAX_LIFETIME,
        }
    }

    /// Require `iss` to be this (when `Some`).
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }

    /// Require `aud` to be or contain this (when `Some`).
    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// Clock skew allowed on `exp` and `nbf` (default `JWT_LEEWAY`); only
    /// whole seconds count.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Refuse tokens that live longer than this (default
    /// `DEFAULT_JWT_MAX_LIFETIME`), counted from `iat` or from now,
    /// whichever is earlier.
    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }

    /// "HS256", "RS256" or "EdDSA", for the start-up log line.
    pub fn algorithm_name(&self) -> &'static str {
        algorithm_name(self.algorithm)
    }

    /// Checks a token: its form, its algorithm, its signature, then its
    /// claims (`claims.rs`, its lifetime included), in that order, so that
    /// nothing in a payload is believed before its signature is.
    /// Surrounding whitespace (a pasted newline) is ignored. Whether the
    /// token opens a given room is the caller's question
    /// (`Identity::opens`).
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::no_token());
        }
        self.check_header(token)?;

        let mut validation = Validation::new(self.algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        // jsonwebtoken checks iss and aud only when present, unless required.
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);

        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &validation)
            .map_err(|e| refusal(e.kind(), self.algorithm_name(), self.audience.is_some()))?
            .claims;
        let bounds = Bounds {
            max_lifetime: self.max_lifetime,
            leeway: self.leeway,
        };
        identity_from(&claims, &bounds)
    }

    /// The header, decoded without trusting it, must name our algorithm.
    fn check_header(&self, token: &str) -> Result<(), AuthError> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(malformed(
                "a token has three parts separated by dots (header.payload.signature)",
            ));
        }
        let header: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(parts[0])
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| malformed("the header is not base64url-encoded JSON"))?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg,
            _ => return Err(malformed("the header has no \"alg\"")),
        };
        if alg != self.algorithm_name() {
            let quoted: String = alg.chars().take(ALG_QUOTE_CHARS).collect();
            return Err(AuthError::new(
                AuthFailure::Algorithm,
                format!(
                    "wrong algorithm: the token says {quoted:?}, this server accepts only {}",
                    self.algorithm_name()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_forms_hide_secrets_and_tokens() {
        let secret: Secret = "hunter2-hunter2-hunter2-hunter2-hunter2".parse().unwrap();
        let shown = format!("{secret:?} {secret:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        // Nor as the list of byte values a derived Debug of Vec<u8> prints.
        assert!(!shown.contains("104, 117"), "{shown}");
        assert!(shown.contains("redacted"));

        let config = AuthConfig::hs256(secret.as_bytes())
            .unwrap()
            .with_issuer(Some("issuer-x".to_string()));
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("hunter2") && !shown.contains("104, 117"));
        assert!(shown.contains("HS256") && shown.contains("issuer-x"));

        let text = mint(
            secret.as_bytes(),
            "walter",
            Duration::from_secs(60),
            None,
            None,
            None,
        )
        .unwrap();
        let token = Token::new(text.clone());
        let shown = format!("{token:?} {token:#?}");
        assert!(!shown.contains(&text[..20]), "{shown}");
        assert!(shown.contains("redacted"));
        assert_eq!(token.as_str(), text);
    }
}
