//! The operator's token, for the moderation API's scripts
//! (`--admin-token-file`): not a JWT but one shared secret, read from a
//! file at start-up (a flag's value would show in `ps`), compared in
//! constant time, and never printed.
//!
//! Why not a JWT with `role: moderator`? A script run by the operator is
//! not a user: it needs no name, no expiry to renew, and must keep working
//! when the sign-in key is rotated or sign-in is off. The rejected
//! alternative, a long-lived moderator token, would also open every room's
//! chat to whoever holds it.

use std::fmt;
use std::path::Path;

use crate::config::MIN_OPERATOR_TOKEN_BYTES;

/// The operator's bearer token.
pub struct OperatorToken(Vec<u8>);

impl fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorToken(<redacted>)")
    }
}

impl OperatorToken {
    /// The token in `path`: its text without surrounding whitespace (an
    /// editor's newline), at least `MIN_OPERATOR_TOKEN_BYTES` long.
    pub fn from_file(path: &Path) -> Result<OperatorToken, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--admin-token-file {}: {e}", path.display()))?;
        Self::new(text.trim())
            .map_err(|why| format!("--admin-token-file {}: {why}", path.display()))
    }

    pub fn new(token: &str) -> Result<OperatorToken, String> {
        if token.len() < MIN_OPERATOR_TOKEN_BYTES {
            return Err(format!(
                "the token is {} bytes; it must be at least {MIN_OPERATOR_TOKEN_BYTES} \
                 (openssl rand -base64 32)",
                token.len()
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the token must be one word (it is sent in a header)".to_string());
        }
        Ok(OperatorToken(token.as_bytes().to_vec()))
    }

    /// Whether `presented` is the token, in time that does not depend on
    /// where they differ (every byte is looked at), so that timing a
    /// thousand guesses does not spell it out.
    pub fn matches(&self, presented: &str) -> bool {
        let presented = presented.as_bytes();
        let mut differ = u8::from(presented.len() != self.0.len());
        for (i, expected) in self.0.iter().enumerate() {
            differ |= expected ^ presented.get(i).copied().unwrap_or(!expected);
        }
        std::hint::black_box(differ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_whole_token_matches() {
        let token = OperatorToken::new("0123456789abcdef0123456789abcdef").unwrap();
        assert!(token.matches("0123456789abcdef0123456789abcdef"));
        assert!(!token.matches("0123456789abcdef0123456789abcdeX"));
        assert!(!token.matches("0123456789abcdef0123456789abcdef0"));
        assert!(!token.matches("0123456789abcdef"));
        assert!(!token.matches(""));
        assert!(OperatorToken::new("short").is_err());
        assert!(OperatorToken::new("0123456789abcdef 0123456789abcdef").is_err());
        assert_eq!(format!("{token:?}"), "OperatorToken(<redacted>)");
    }
}
