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
