//! Making a token, for `threadchat token`: the claims for a user, signed
//! with HS256 and the server's own secret, so that a class can sign in
//! without running a separate issuer. It checks what it signs by the rules
//! `verify` applies (a secret long enough, a valid username, valid
//! `follows` and `rooms`, a lifetime within `MAX_TOKEN_TTL`), so it never
//! makes a token the server would refuse.
//!
//! Only HS256: minting RS256 or EdDSA would need the private key, which the
//! server never holds (it is given only the public half); such tokens come
//! from whatever service holds that key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::keys::check_secret;
use crate::config::check_ttl;
use crate::protocol::{Role, valid_room_name, validate_username};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

/// What a token made by `mint_grant` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The user (`sub`), checked and trimmed like any username.
    pub username: String,
    /// How long it is valid, from now (whole seconds, at most
    /// `MAX_TOKEN_TTL`).
    pub ttl: Duration,
    /// The users they follow (`follows`), if the claim is wanted.
    pub follows: Option<Vec<String>>,
    /// The only rooms it opens (`rooms`, lower-cased); `None`: every room.
    pub rooms: Option<Vec<String>>,
    /// `iss` and `aud`, if the server asks for them.
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The `role` claim: `Moderator` writes `"role":"moderator"`.
    pub role: Role,
}

/// A token for `username`, valid from now for `ttl`, for every room: a
/// shorthand for `mint_grant`.
pub fn mint(
    secret: &[u8],
    username: &str,
    ttl: Duration,
    follows: Option<Vec<String>>,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, String> {
    let grant = Grant {
        username: username.to_string(),
        ttl,
        follows,
        rooms: None,
        issuer: issuer.map(str::to_string),
        audience: audience.map(str::to_string),
        role: Role::Member,
    };
    mint_grant(secret, &grant)
}

/// A token saying what `grant` says, valid from now for `grant.ttl`, signed
/// with HS256 and `secret`. What `threadchat token` prints. Checks its
/// inputs by the rules `verify` applies, so that it never makes a token the
/// server would refuse.
pub fn mint_grant(secret: &[u8], grant: &Grant) -> Result<String, String> {
    check_secret(secret)?;
    let username = validate_username(&grant.username).map_err(|r| r.details)?;
    let follows = checked(grant.follows.as_deref(), "follows", |name| {
        validate_username(name).map_err(|r| r.details)
    })?;
    let rooms = checked(grant.rooms.as_deref(), "rooms", valid_room_name)?;
    check_ttl(grant.ttl)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is set before 1970".to_string())?
        .as_secs();
    let claims = MintedClaims {
        sub: &username,
        iat: now,
        exp: now + grant.ttl.as_secs(),
        iss: grant.issuer.as_deref(),
        aud: grant.audience.as_deref(),
        follows: follows.as_deref(),
        rooms: rooms.as_deref(),
        role: (grant.role == Role::Moderator).then_some("moderator"),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| format!("cannot sign the token: {e}"))
}

/// Each name of a list claim checked (and normalised) by `valid`; the
/// error names the claim and the name.
fn checked(
    names: Option<&[String]>,
    claim: &str,
    valid: impl Fn(&str) -> Result<String, String>,
) -> Result<Option<Vec<String>>, String> {
    names
        .map(|names| {
            names
                .iter()
                .map(|name| valid(name).map_err(|why| format!("{claim} {name:?}: {why}")))
                .collect()
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthConfig, parse_ttl};
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
        let grant = Grant {
            username: "walter".into(),
            ttl: hour,
            rooms: Some(vec!["algebra".into(), "no room".into()]),
            ..Grant::default()
        };
        let err = mint_grant(SECRET, &grant).unwrap_err();
        assert!(err.starts_with("rooms \"no room\""), "{err}");
    }

    #[test]
    fn a_minted_rooms_claim_is_lower_cased_and_opens_only_its_rooms() {
        let grant = Grant {
            username: "walter".into(),
            ttl: Duration::from_secs(60),
            rooms: Some(vec!["Algebra".into(), "staff".into()]),
            ..Grant::default()
        };
        let token = mint_grant(SECRET, &grant).unwrap();
        let identity = AuthConfig::hs256(SECRET).unwrap().verify(&token).unwrap();
        assert_eq!(identity.rooms, Some(vec!["algebra".into(), "staff".into()]));
        assert!(identity.opens("algebra") && !identity.opens("lobby"));
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
}
