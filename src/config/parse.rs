//! How the command line's text is read: seconds, lifetimes, names and
//! paths, each with the error that says what is wrong with it.

use std::time::Duration;

use super::*;

/// Durations on the command line are seconds, fractions allowed (`0.5`).
pub(super) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// `--jwt-max-lifetime`: whole seconds, at least one (a maximum of zero
/// would refuse every token).
pub(super) fn parse_lifetime(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("a token's maximum lifetime must be at least 1 second".to_string()),
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => Err(format!("{text:?} is not a whole number of seconds")),
    }
}

/// A `--cluster` name: 1 to 32 of a-z, 0-9, - and _ (it starts every key).
pub(super) fn parse_cluster_name(text: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a cluster name: use 1 to 32 of a-z, 0-9, - and _"
        ))
    }
}

/// A `--conformance-echo` path: `/` and up to `MAX_ECHO_PATH_CHARS` more
/// of a-z, A-Z, 0-9, `-`, `_`, `.` and `/`, and not a room's (`/`, `/r/…`),
/// so that the echo can never take the place of a chat.
pub(super) fn parse_echo_path(text: &str) -> Result<String, String> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err(format!("{text:?} is not a path: start it with /"));
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    if rest.is_empty() || rest.len() > MAX_ECHO_PATH_CHARS || !rest.chars().all(allowed) {
        return Err(format!(
            "{text:?} is not an echo path: use / and 1 to {MAX_ECHO_PATH_CHARS} of a-z, 0-9, -, _, . and /"
        ));
    }
    if text == "/r" || text.starts_with("/r/") {
        return Err(format!(
            "{text:?} is a room's path: choose another, such as /echo"
        ));
    }
    Ok(text.to_string())
}

/// A token lifetime `threadchat token` may sign: a second to `MAX_TOKEN_TTL`.
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl.as_secs() == 0 {
        return Err("a token's lifetime must be at least 1 second".to_string());
    }
    if ttl > MAX_TOKEN_TTL {
        return Err(format!(
            "a token's lifetime is at most {} days",
            MAX_TOKEN_TTL.as_secs() / 86_400
        ));
    }
    Ok(())
}

/// A lifetime such as "90s", "15m", "2h", "1d" or plain seconds ("3600"),
/// for `threadchat token --ttl`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a lifetime: use seconds, or a number followed by s, m, h or d \
             (90s, 15m, 2h, 1d)"
        )
    };
    let trimmed = text.trim();
    let (number, unit_secs) = match trimmed.char_indices().last() {
        Some((i, 's')) => (&trimmed[..i], 1),
        Some((i, 'm')) => (&trimmed[..i], 60),
        Some((i, 'h')) => (&trimmed[..i], 3600),
        Some((i, 'd')) => (&trimmed[..i], 86_400),
        _ => (trimmed, 1),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs))
        .ok_or_else(bad)?;
    let ttl = Duration::from_secs(secs);
    check_ttl(ttl)?;
    Ok(ttl)
}
