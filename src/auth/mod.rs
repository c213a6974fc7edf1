//! Sign-in with JSON Web Tokens: checking a token a client sends, and making
//! one for `threadchat token`.
//!
//! A token is `header.payload.signature`, each part base64url; the payload's
//! claims say who the holder is (`sub`, the username), until when (`exp`),
//! and optionally from when (`nbf`), for whom (`aud`), from whom (`iss`), and
//! which users they follow (`follows`). The cryptography (HMAC-SHA256, RSA
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

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{Config, JWT_LEEWAY, MIN_JWT_SECRET_BYTES, MIN_RSA_KEY_BITS, check_ttl};
pub use crate::config::{Secret, parse_ttl};
use crate::protocol::validate_username;

/// The environment variable that may hold the HS256 secret.
pub const JWT_SECRET_ENV: &str = "THREADCHAT_JWT_SECRET";

/// Most characters of a token's `alg` quoted back in a refusal: the header
/// is the sender's text, and a refusal should not carry much of it.
const ALG_QUOTE_CHARS: usize = 16;

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
}

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
}

/// A refused token: which check failed, in a sentence fit to send back to
/// the client. It never contains the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    failure: AuthFailure,
    details: String,
}

impl AuthError {
    fn new(failure: AuthFailure, details: impl Into<String>) -> AuthError {
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
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm_name())
            .field("key", &format_args!("<redacted>"))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl AuthConfig {
    /// Tokens signed with HMAC-SHA256 and this shared secret (not empty;
    /// see `weak_secret_warning` for one that is too short to be safe).
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
        let label = pem_label(pem).ok_or_else(|| {
            "not a PEM public key: expected a \"-----BEGIN PUBLIC KEY-----\" block".to_string()
        })?;
        if label.contains("PRIVATE") {
            return Err(format!(
                "this is a private key (BEGIN {label}); give the server only the public key \
                 (openssl pkey -in KEY -pubout)"
            ));
        }
        if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
            return Err(format!(
                "expected a public key (BEGIN PUBLIC KEY), found BEGIN {label}"
            ));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            // Rejects anything but a 32-byte Ed25519 key.
            Jwk::from_decoding_key(&key, Some(Algorithm::EdDSA))
                .map_err(|_| "the Ed25519 public key is not 32 bytes".to_string())?;
            return Ok(AuthConfig::new(key, Algorithm::EdDSA));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            let bits = rsa_modulus_bits(&key)?;
            if bits < MIN_RSA_KEY_BITS {
                return Err(format!(
                    "the RSA public key has {bits} bits; at least {MIN_RSA_KEY_BITS} are needed"
                ));
            }
            return Ok(AuthConfig::new(key, Algorithm::RS256));
        }
        Err(
            "not an RSA or Ed25519 public key (only RS256 and EdDSA are supported; \
             EC keys are not)"
                .to_string(),
        )
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> AuthConfig {
        AuthConfig {
            key,
            algorithm,
            issuer: None,
            audience: None,
            leeway: JWT_LEEWAY,
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

    /// "HS256", "RS256" or "EdDSA", for the start-up log line.
    pub fn algorithm_name(&self) -> &'static str {
        algorithm_name(self.algorithm)
    }

    /// Checks a token: its form, its algorithm, its signature, then its
    /// claims, in that order, so that nothing in a payload is believed before
    /// its signature is. Surrounding whitespace (a pasted newline) is ignored.
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
            .map_err(|e| self.refusal(e.kind()))?
            .claims;
        identity_from(&claims)
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

    /// Words for each of jsonwebtoken's refusals.
    fn refusal(&self, kind: &ErrorKind) -> AuthError {
        use AuthFailure as F;
        match kind {
            ErrorKind::InvalidSignature => AuthError::new(
                F::Signature,
                "bad signature: the token was not signed with this server's key, or was altered",
            ),
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::new(
                F::Algorithm,
                format!(
                    "wrong algorithm: this server accepts only {}",
                    self.algorithm_name()
                ),
            ),
            ErrorKind::ExpiredSignature => AuthError::new(F::Expired, "token expired"),
            ErrorKind::ImmatureSignature => AuthError::new(
                F::NotYetValid,
                "token not valid yet: its nbf (not before) is in the future",
            ),
            ErrorKind::InvalidIssuer => AuthError::new(F::Issuer, "wrong issuer (iss)"),
            ErrorKind::InvalidAudience if self.audience.is_none() => AuthError::new(
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
}

fn malformed(why: impl fmt::Display) -> AuthError {
    AuthError::new(AuthFailure::Malformed, format!("malformed token: {why}"))
}

/// The claims beyond the standard checks: `sub`, the value of `exp`, and
/// `follows`.
fn identity_from(claims: &Map<String, Value>) -> Result<Identity, AuthError> {
    let username = match claims.get("sub") {
        Some(Value::String(sub)) => validate_username(sub).map_err(|refusal| {
            AuthError::new(
                AuthFailure::Subject,
                format!("invalid subject (sub): {}", refusal.details),
            )
        })?,
        Some(_) => {
            return Err(AuthError::new(
                AuthFailure::Subject,
                "invalid subject (sub): it must be a username (a string)",
            ));
        }
        None => {
            return Err(AuthError::new(
                AuthFailure::Subject,
                "missing subject (sub): the token must name the user",
            ));
        }
    };

    // jsonwebtoken has already required exp to be a non-negative number; it
    // rounds fractions, and so does this.
    let exp = claims.get("exp").and_then(|exp| {
        exp.as_u64().or_else(|| {
            exp.as_f64()
                .filter(|e| e.is_finite() && *e >= 0.0)
                .map(|e| e.round() as u64)
        })
    });
    let expires_at = exp
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        .ok_or_else(|| {
            AuthError::new(
                AuthFailure::MissingExpiry,
                "invalid expiry (exp): not a time this server can represent",
            )
        })?;

    let follows = match claims.get("follows") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .as_str()
                    .and_then(|name| validate_username(name).ok())
                    .ok_or_else(|| {
                        AuthError::new(
                            AuthFailure::Follows,
                            format!("invalid follows: item {i} is not a valid username"),
                        )
                    })?;
                names.push(name);
            }
            Some(names)
        }
        Some(_) => {
            return Err(AuthError::new(
                AuthFailure::Follows,
                "invalid follows: it must be a list of usernames",
            ));
        }
    };

    Ok(Identity {
        username,
        expires_at,
        follows,
    })
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        // An AuthConfig is only ever built with the three above.
        _ => "unsupported",
    }
}

fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.is_empty() {
        return Err("the JWT secret is empty".to_string());
    }
    Ok(())
}

/// A warning for a secret shorter than `MIN_JWT_SECRET_BYTES`, which the
/// server logs at start-up. Not a refusal: a class demo with a short shared
/// secret should start, but the operator should know it can be guessed.
pub fn weak_secret_warning(secret: &[u8]) -> Option<String> {
    (secret.len() < MIN_JWT_SECRET_BYTES).then(|| {
        format!(
            "the JWT secret has {} bytes; RFC 7518 asks for at least {MIN_JWT_SECRET_BYTES} \
             for HS256, and a shorter one can be found by brute force from any token \
             (make one with: openssl rand -base64 32)",
            secret.len()
        )
    })
}

/// The label of the first `-----BEGIN …-----` line, e.g. "PUBLIC KEY".
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    Some(&rest[..rest.find("-----")?])
}

/// The size of an RSA public key's modulus; parsing it also proves the key
/// is a well-formed RSA key, which jsonwebtoken would otherwise only find out
/// at the first token.
fn rsa_modulus_bits(key: &DecodingKey) -> Result<usize, String> {
    let invalid = || "the RSA public key is not valid".to_string();
    let jwk = Jwk::from_decoding_key(key, Some(Algorithm::RS256)).map_err(|_| invalid())?;
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return Err(invalid());
    };
    let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).map_err(|_| invalid())?;
    let modulus = match modulus.iter().position(|&b| b != 0) {
        Some(first) => &modulus[first..],
        None => return Err(invalid()),
    };
    Ok(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
}

/// The claims `mint` signs.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    follows: Option<&'a [String]>,
}

/// A token for `username`, valid from now for `ttl` (whole seconds, at most
/// `MAX_TOKEN_TTL`), signed with HS256 and `secret`. What `threadchat token`
/// prints. Checks its inputs by the rules `verify` applies, so that it never
/// makes a token the server would refuse.
pub fn mint(
    secret: &[u8],
    username: &str,
    ttl: Duration,
    follows: Option<Vec<String>>,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, String> {
    check_secret(secret)?;
    let username = validate_username(username).map_err(|r| r.details)?;
    let follows = follows
        .map(|names| {
            names
                .iter()
                .map(|name| {
                    validate_username(name).map_err(|r| format!("follows {name:?}: {}", r.details))
                })
                .collect::<Result<Vec<String>, String>>()
        })
        .transpose()?;
    check_ttl(ttl)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is set before 1970".to_string())?
        .as_secs();
    let claims = MintedClaims {
        sub: &username,
        iat: now,
        exp: now + ttl.as_secs(),
        iss: issuer,
        aud: audience,
        follows: follows.as_deref(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| format!("cannot sign the token: {e}"))
}

/// The HS256 secret the flags give, from exactly one of `--jwt-secret`,
/// `--jwt-secret-file` or the environment (`JWT_SECRET_ENV`).
pub fn secret_of(config: &Config) -> Result<Option<Secret>, String> {
    if let Some(secret) = &config.jwt_secret {
        if config.jwt_secret_file.is_some() {
            return Err("give the JWT secret once: --jwt-secret or --jwt-secret-file".into());
        }
        return Ok(Some(secret.clone()));
    }
    let env = std::env::var(JWT_SECRET_ENV).ok();
    secret_from(None, config.jwt_secret_file.as_deref(), env.as_deref())
}

/// How logins are checked: `None` when sign-in is off (no secret, no
/// key), else the verifier built from the flags. A bad key or secret is
/// an error naming it (the file, never the secret).
pub fn from_config(config: &Config) -> Result<Option<AuthConfig>, String> {
    let secret = secret_of(config)?;
    let auth = match (secret, &config.jwt_public_key) {
        (Some(_), Some(_)) => {
            return Err("give either a JWT secret or --jwt-public-key, not both".into());
        }
        (Some(secret), None) => {
            if let Some(warning) = weak_secret_warning(secret.as_bytes()) {
                log::warn!("{warning}");
            }
            AuthConfig::hs256(secret.as_bytes())?
        }
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
            AuthConfig::from_public_key_pem(&pem)
                .map_err(|e| format!("--jwt-public-key {}: {e}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(
        auth.with_issuer(config.jwt_issuer.clone())
            .with_audience(config.jwt_audience.clone())
            .with_leeway(config.jwt_leeway),
    ))
}

/// The HS256 secret from exactly one of: the flag's value, a file (its
/// trailing line break trimmed), the environment variable `JWT_SECRET_ENV`
/// (whose value the caller reads and passes). `None` when none is given; an
/// error when several are, or the one given is empty. The flag is the least
/// safe of the three: other users can see a command line in `ps`.
pub fn secret_from(
    flag: Option<&str>,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, String> {
    let given: Vec<&str> = [
        flag.map(|_| "--jwt-secret"),
        file.map(|_| "--jwt-secret-file"),
        env.map(|_| JWT_SECRET_ENV),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(format!(
            "give the JWT secret one way only; found {}",
            given.join(" and ")
        ));
    }
    if let Some(value) = flag {
        if value.is_empty() {
            return Err("--jwt-secret is empty".to_string());
        }
        return Ok(Some(Secret(value.as_bytes().to_vec())));
    }
    if let Some(path) = file {
        let mut bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWT secret file {}: {e}", path.display()))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(format!("the JWT secret file {} is empty", path.display()));
        }
        warn_if_others_can_read(path);
        return Ok(Some(Secret(bytes)));
    }
    if let Some(value) = env {
        if value.is_empty() {
            return Err(format!("{JWT_SECRET_ENV} is set but empty"));
        }
        return Ok(Some(Secret(value.as_bytes().to_vec())));
    }
    Ok(None)
}

/// A secret file readable by group or others is worth a warning (naming the
/// file, never its content), as ssh does for private keys.
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            log::warn!(
                "the JWT secret file {} is readable by other users (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_TOKEN_TTL;

    const SECRET: &[u8] = b"unit-test-secret-unit-test-secret-0123";

    #[test]
    fn ttl_units_are_seconds_minutes_hours_days() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl(" 2h "), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn ttl_garbage_zero_and_too_long_are_refused() {
        for bad in [
            "", "h", "2x", "-5", "1.5h", "2 h", "2H", "1e3", "s90", "h2", "٣s",
        ] {
            let err = parse_ttl(bad).unwrap_err();
            assert!(err.contains("not a lifetime"), "{bad:?}: {err}");
        }
        assert!(parse_ttl("0").unwrap_err().contains("at least 1 second"));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("31d").unwrap_err().contains("at most 30 days"));
        assert_eq!(parse_ttl("30d"), Ok(MAX_TOKEN_TTL));
        // Overflowing u64 is an error, not a panic.
        assert!(parse_ttl("99999999999999999999d").is_err());
        assert!(parse_ttl("9999999999999999999d").is_err());
    }

    #[test]
    fn empty_secrets_are_refused_and_short_ones_warned_about() {
        assert!(AuthConfig::hs256(b"").unwrap_err().contains("empty"));
        let hour = Duration::from_secs(3600);
        assert!(mint(b"", "walter", hour, None, None, None).is_err());
        assert!(AuthConfig::hs256(b"s3cret").is_ok());
        let warning = weak_secret_warning(b"s3cret").expect("a warning");
        assert!(warning.contains("at least 32"), "{warning}");
        assert_eq!(weak_secret_warning(&[7u8; MIN_JWT_SECRET_BYTES]), None);
    }

    #[test]
    fn mint_refuses_what_verify_would_refuse() {
        let hour = Duration::from_secs(3600);
        assert!(mint(SECRET, "", hour, None, None, None).is_err());
        assert!(mint(SECRET, &"w".repeat(33), hour, None, None, None).is_err());
        assert!(mint(SECRET, "wal\u{7}ter", hour, None, None, None).is_err());
        let bad_follow = Some(vec!["maria".to_string(), "".to_string()]);
        assert!(
            mint(SECRET, "walter", hour, bad_follow, None, None)
                .unwrap_err()
                .contains("follows")
        );
        assert!(mint(SECRET, "walter", Duration::ZERO, None, None, None).is_err());
        assert!(mint(SECRET, "walter", MAX_TOKEN_TTL * 2, None, None, None).is_err());
    }

    #[test]
    fn minted_token_verifies_and_carries_the_claims() {
        let follows = Some(vec!["maria".to_string(), "laura".to_string()]);
        let token = mint(
            SECRET,
            "  walter ",
            Duration::from_secs(120),
            follows.clone(),
            Some("issuer"),
            Some("chat"),
        )
        .unwrap();
        let config = AuthConfig::hs256(SECRET)
            .unwrap()
            .with_issuer(Some("issuer".to_string()))
            .with_audience(Some("chat".to_string()));
        let identity = config.verify(&token).unwrap();
        assert_eq!(identity.username, "walter");
        assert_eq!(identity.follows, follows);
        let left = identity
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(100) && left <= Duration::from_secs(121));
    }

    #[test]
    fn secret_comes_from_exactly_one_place() {
        assert!(secret_from(None, None, None).unwrap().is_none());
        let from_flag = secret_from(Some("abc"), None, None).unwrap().unwrap();
        assert_eq!(from_flag.as_bytes(), b"abc");
        let from_env = secret_from(None, None, Some("xyz")).unwrap().unwrap();
        assert_eq!(from_env.as_bytes(), b"xyz");

        let err = secret_from(Some("abc"), None, Some("xyz")).unwrap_err();
        assert!(
            err.contains("--jwt-secret and THREADCHAT_JWT_SECRET"),
            "{err}"
        );
        // The error names the sources, never the values.
        assert!(!err.contains("abc") && !err.contains("xyz"));
        let path = Path::new("/nonexistent");
        assert!(secret_from(Some("a"), Some(path), None).is_err());
        assert!(secret_from(None, Some(path), Some("x")).is_err());

        assert!(
            secret_from(Some(""), None, None)
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            secret_from(None, None, Some(""))
                .unwrap_err()
                .contains("empty")
        );
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn with(name: &str, content: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("threadchat-auth-{}-{name}", std::process::id()));
            std::fs::write(&path, content).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn secret_file_loses_its_trailing_line_break_only() {
        let unix = TempFile::with("unix", b"  the secret \n");
        let secret = secret_from(None, Some(&unix.0), None).unwrap().unwrap();
        assert_eq!(secret.as_bytes(), b"  the secret ");

        let dos = TempFile::with("dos", b"the secret\r\n");
        let secret = secret_from(None, Some(&dos.0), None).unwrap().unwrap();
        assert_eq!(secret.as_bytes(), b"the secret");

        let empty = TempFile::with("empty", b"\n");
        let err = secret_from(None, Some(&empty.0), None).unwrap_err();
        assert!(err.contains("is empty"), "{err}");

        let missing = Path::new("/nonexistent/threadchat-secret");
        let err = secret_from(None, Some(missing), None).unwrap_err();
        assert!(
            err.contains("cannot read") && err.contains("/nonexistent"),
            "{err}"
        );
    }

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

    #[test]
    fn public_keys_of_other_kinds_are_refused_clearly() {
        let private = include_bytes!("../../tests/fixtures/auth/rsa_private.pem");
        let err = AuthConfig::from_public_key_pem(private).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        let err = AuthConfig::from_public_key_pem(include_bytes!(
            "../../tests/fixtures/auth/ec_p256_public.pem"
        ))
        .unwrap_err();
        assert!(err.contains("not an RSA or Ed25519"), "{err}");
        let err = AuthConfig::from_public_key_pem(include_bytes!(
            "../../tests/fixtures/auth/rsa1024_public.pem"
        ))
        .unwrap_err();
        assert!(err.contains("1024 bits"), "{err}");
        let err = AuthConfig::from_public_key_pem(b"hello").unwrap_err();
        assert!(err.contains("not a PEM"), "{err}");
        let garbage = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(AuthConfig::from_public_key_pem(garbage).is_err());
    }

    #[test]
    fn public_key_type_decides_the_algorithm() {
        let rsa = include_bytes!("../../tests/fixtures/auth/rsa_public.pem");
        assert_eq!(
            AuthConfig::from_public_key_pem(rsa)
                .unwrap()
                .algorithm_name(),
            "RS256"
        );
        let rsa1 = include_bytes!("../../tests/fixtures/auth/rsa_public_pkcs1.pem");
        assert_eq!(
            AuthConfig::from_public_key_pem(rsa1)
                .unwrap()
                .algorithm_name(),
            "RS256"
        );
        let ed = include_bytes!("../../tests/fixtures/auth/ed25519_public.pem");
        assert_eq!(
            AuthConfig::from_public_key_pem(ed)
                .unwrap()
                .algorithm_name(),
            "EdDSA"
        );
    }
}
