//! A secret given on the command line, which must never reach a log.

use std::fmt;
use std::str::FromStr;

/// An HS256 secret. Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct Secret(pub(crate) Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// So that a command-line flag can be parsed straight into a `Secret`.
impl FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Secret, String> {
        if text.is_empty() {
            return Err("the JWT secret is empty".to_string());
        }
        Ok(Secret(text.as_bytes().to_vec()))
    }
}

/// A Redis URL (`--redis`), which may carry a password
/// (`redis://:pw@host:6379/`, `redis://user:pw@host/`,
/// `unix:///run/redis.sock?pass=pw`). Its `Display` and `Debug` forms, the
/// only ones a log line, an error or an HTTP answer can use, show it with
/// the password replaced; `expose` gives the real one to the code that
/// connects.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn new(url: impl Into<String>) -> RedisUrl {
        RedisUrl(url.into())
    }

    /// The URL as given, password included: for connecting, never showing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", redact_url(&self.0))
    }
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<RedisUrl, String> {
        if text.is_empty() {
            return Err("the Redis URL is empty".to_string());
        }
        Ok(RedisUrl(text.to_string()))
    }
}

/// A URL with the password of its user part and of any `pass` or
/// `password` query parameter replaced by `***`. Something that is not a
/// URL at all but has an `@` in it is hidden whole.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return if url.contains('@') {
            "<redacted>".to_string()
        } else {
            url.to_string()
        };
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or_default();
            format!("{user}:***@{}", &authority[at + 1..])
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("pass")
                            || key.eq_ignore_ascii_case("password") =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_never_shows_its_password() {
        let cases = [
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            (
                "redis://:hunter2@10.0.0.5:6379/0",
                "redis://:***@10.0.0.5:6379/0",
            ),
            ("rediss://ann:hunter2@host/", "rediss://ann:***@host/"),
            ("redis://ann@host/", "redis://ann:***@host/"),
            ("redis://:p@ss:w@rd@host:1/", "redis://:***@host:1/"),
            (
                "unix:///run/redis.sock?db=1&pass=hunter2",
                "unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "redis://host/?PASSWORD=hunter2",
                "redis://host/?PASSWORD=***",
            ),
            ("not a url but hunter2@host", "<redacted>"),
        ];
        for (url, shown) in cases {
            let url: RedisUrl = url.parse().unwrap();
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("hunter2"));
        }
        assert_eq!(RedisUrl::new("redis://:x@h/").expose(), "redis://:x@h/");
    }
}
