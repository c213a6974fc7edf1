//! What a token says beyond the standard checks: who (`sub`), until when
//! (`exp`), whom they follow (`follows`), which rooms they may enter
//! (`rooms`), what they are (`role`: `"moderator"` may moderate; any other
//! string, or none, is a member), and whether it lives longer than the
//! server allows.
//!
//! jsonwebtoken has already checked the signature, `exp`, `nbf`, `iss` and
//! `aud` when these run, so nothing here is believed before its signature
//! is. Each claim is checked as strictly as the same value would be from a
//! client (a `sub` like a username, a room like a room name), so a token
//! cannot carry what a login could not.
//!
//! A token's lifetime is counted from its `iat` or from now, whichever is
//! earlier. From now alone, a token issued for a year would be refused
//! today and accepted in its last month, which no operator would guess;
//! from `iat` alone, an issuer could leave `iat` out (or put it ahead) and
//! so escape the bound. The earlier of the two trusts `iat` only to make
//! the check stricter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::Identity;
use super::failure::{AuthError, AuthFailure, malformed};
use crate::protocol::{Role, valid_room_name, validate_username};

/// The limits a token's claims are held to.
pub(super) struct Bounds {
    /// Longest lifetime accepted (`--jwt-max-lifetime`).
    pub(super) max_lifetime: Duration,
    /// Clock skew allowed, here between the issuer's `iat` and our clock.
    pub(super) leeway: Duration,
}

/// The identity a verified token's claims give, or the claim that is wrong.
pub(super) fn identity_from(
    claims: &Map<String, Value>,
    bounds: &Bounds,
) -> Result<Identity, AuthError> {
    let username = subject(claims)?;
    // jsonwebtoken has already required exp to be a non-negative number.
    let unrepresentable = || {
        AuthError::new(
            AuthFailure::MissingExpiry,
            "invalid expiry (exp): not a time this server can represent",
        )
    };
    let exp = claims
        .get("exp")
        .and_then(seconds)
        .ok_or_else(unrepresentable)?;
    let expires_at = UNIX_EPOCH
        .checked_add(Duration::from_secs(exp))
        .ok_or_else(unrepresentable)?;
    let iat = match claims.get("iat") {
        None => None,
        Some(iat) => Some(
            seconds(iat)
                .ok_or_else(|| malformed("the claim iat is not a number of seconds since 1970"))?,
        ),
    };
    check_lifetime(exp, iat, bounds)?;
    let follows = names(claims, "follows", |name| validate_username(name).ok())
        .map_err(|why| AuthError::new(AuthFailure::Follows, format!("invalid follows: {why}")))?;
    let rooms = names(claims, "rooms", |name| valid_room_name(name).ok())
        .map_err(|why| AuthError::new(AuthFailure::Rooms, format!("invalid rooms: {why}")))?;
    let role = match claims.get("role") {
        None | Some(Value::Null) => Role::Member,
        Some(Value::String(role)) if role == "moderator" => Role::Moderator,
        // An issuer's own roles (`student`, `ta`) grant nothing here.
        Some(Value::String(_)) => Role::Member,
        Some(_) => return Err(malformed("the claim role is not a string")),
    };
    Ok(Identity {
        username,
        expires_at,
        follows,
        rooms,
        role,
    })
}

/// `sub`: present, a string, and a valid username (trimmed).
fn subject(claims: &Map<String, Value>) -> Result<String, AuthError> {
    match claims.get("sub") {
        Some(Value::String(sub)) => validate_username(sub).map_err(|refusal| {
            AuthError::new(
                AuthFailure::Subject,
                format!("invalid subject (sub): {}", refusal.details),
            )
        }),
        Some(_) => Err(AuthError::new(
            AuthFailure::Subject,
            "invalid subject (sub): it must be a username (a string)",
        )),
        None => Err(AuthError::new(
            AuthFailure::Subject,
            "missing subject (sub): the token must name the user",
        )),
    }
}

/// A time claim in whole seconds since 1970, fractions rounded (as
/// jsonwebtoken does); `None` if it is not such a number.
fn seconds(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|secs| secs.is_finite() && *secs >= 0.0 && *secs < u64::MAX as f64)
            .map(|secs| secs.round() as u64)
    })
}

/// Refuses a token that lives longer than `bounds.max_lifetime`, counted
/// from its `iat` or from now, whichever is earlier (see the module
/// comment), with the leeway for the issuer's clock.
fn check_lifetime(exp: u64, iat: Option<u64>, bounds: &Bounds) -> Result<(), AuthError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let from = iat.map_or(now, |iat| iat.min(now));
    let lifetime = exp.saturating_sub(from);
    let allowed = bounds
        .max_lifetime
        .as_secs()
        .saturating_add(bounds.leeway.as_secs());
    if lifetime <= allowed {
        return Ok(());
    }
    let counted = if iat.is_some_and(|iat| iat < now) {
        "from its iat"
    } else {
        "from now"
    };
    Err(AuthError::new(
        AuthFailure::TooLong,
        format!(
            "token lives too long: it is valid for {} {counted}; this server accepts at most {}",
            spoken(lifetime),
            spoken(bounds.max_lifetime.as_secs())
        ),
    ))
}

/// A span of seconds as a person says it: "30 days", "2 hours", "90 s",
/// "about 45.5 days".
fn spoken(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        86_400.. if secs.is_multiple_of(86_400) => plural(secs / 86_400, "day"),
        86_400.. => format!("about {:.1} days", secs as f64 / 86_400.0),
        3_600.. if secs.is_multiple_of(3_600) => plural(secs / 3_600, "hour"),
        3_600.. => format!("about {:.1} hours", secs as f64 / 3_600.0),
        60.. if secs.is_multiple_of(60) => plural(secs / 60, "minute"),
        _ => format!("{secs} s"),
    }
}

/// A claim that is a list of names, each checked (and normalised) by
/// `valid`: `None` when absent or null, else the list; the error says which
/// item is wrong.
fn names(
    claims: &Map<String, Value>,
    claim: &str,
    valid: impl Fn(&str) -> Option<String>,
) -> Result<Option<Vec<String>>, String> {
    let items = match claims.get(claim) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("it must be a list of names".to_string()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .and_then(&valid)
                .ok_or_else(|| format!("item {i} is not a valid name"))
        })
        .collect::<Result<Vec<String>, String>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: u64 = 86_400;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn bounds(max_days: u64) -> Bounds {
        Bounds {
            max_lifetime: Duration::from_secs(max_days * DAY),
            leeway: Duration::from_secs(30),
        }
    }

    fn identity(claims: serde_json::Value, bounds: &Bounds) -> Result<Identity, AuthError> {
        identity_from(claims.as_object().unwrap(), bounds)
    }

    #[test]
    fn rooms_are_checked_like_room_names_and_lower_cased() {
        let exp = now() + 60;
        let token = identity(
            json!({"sub": "walter", "exp": exp, "rooms": ["Algebra", "staff"]}),
            &bounds(30),
        )
        .unwrap();
        assert_eq!(token.rooms, Some(vec!["algebra".into(), "staff".into()]));
        assert!(token.opens("algebra") && token.opens("staff") && !token.opens("lobby"));

        let every = identity(json!({"sub": "walter", "exp": exp}), &bounds(30)).unwrap();
        assert_eq!(every.rooms, None);
        assert_eq!(every.role, Role::Member);
        assert!(every.opens("anything"));

        for bad in [json!("algebra"), json!(["a b"]), json!([""]), json!([7])] {
            let err =
                identity(json!({"sub": "w", "exp": exp, "rooms": bad}), &bounds(30)).unwrap_err();
            assert_eq!(err.failure(), AuthFailure::Rooms, "{bad}: {err}");
            assert!(err.details().starts_with("invalid rooms"), "{err}");
        }
    }

    #[test]
    fn only_the_moderator_role_grants_moderation() {
        let exp = now() + 60;
        let role = |value| identity(json!({"sub": "w", "exp": exp, "role": value}), &bounds(30));
        assert_eq!(role(json!("moderator")).unwrap().role, Role::Moderator);
        assert_eq!(role(json!("Moderator")).unwrap().role, Role::Member);
        assert_eq!(role(json!("student")).unwrap().role, Role::Member);
        assert!(role(json!(["moderator"])).is_err());
    }

    #[test]
    fn lifetime_counts_from_iat_or_now_whichever_is_earlier() {
        let now = now();
        let ok = |claims| identity(claims, &bounds(30)).is_ok();
        assert!(ok(json!({"sub": "w", "exp": now + 30 * DAY})));
        assert!(ok(json!({"sub": "w", "iat": now, "exp": now + 30 * DAY})));
        let too_long =
            identity(json!({"sub": "w", "exp": now + 31 * DAY}), &bounds(30)).unwrap_err();
        assert_eq!(too_long.failure(), AuthFailure::TooLong);
        assert_eq!(
            too_long.details(),
            "token lives too long: it is valid for 31 days from now; \
             this server accepts at most 30 days"
        );
        // Issued a year ago for a year: refused in its last days too.
        let old = identity(
            json!({"sub": "w", "iat": now - 360 * DAY, "exp": now + 5 * DAY}),
            &bounds(30),
        )
        .unwrap_err();
        assert!(old.details().contains("from its iat"), "{old}");
        // An iat in the future does not shorten the count.
        assert!(!ok(
            json!({"sub": "w", "iat": now + 20 * DAY, "exp": now + 40 * DAY})
        ));
        // The issuer's clock may be a little ahead.
        assert!(ok(json!({"sub": "w", "exp": now + 30 * DAY + 20})));
        assert!(
            identity(
                json!({"sub": "w", "iat": "yesterday", "exp": now + 60}),
                &bounds(30)
            )
            .is_err()
        );
    }

    #[test]
    fn spans_are_said_in_the_largest_whole_unit() {
        assert_eq!(spoken(30 * DAY), "30 days");
        assert_eq!(spoken(DAY), "1 day");
        assert_eq!(spoken(7_200), "2 hours");
        assert_eq!(spoken(90), "90 s");
        assert_eq!(spoken(120), "2 minutes");
        assert_eq!(spoken(45 * DAY + DAY / 2), "about 45.5 days");
        assert_eq!(spoken(5_400), "about 1.5 hours");
    }
}
