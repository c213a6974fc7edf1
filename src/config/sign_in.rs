//! The numbers of sign-in: clock skew, token lifetimes, key sizes, failed
//! tries, each with its reason.

use std::time::Duration;

/// Clock skew allowed when checking a token's `exp` and `nbf`: the service
/// that issues tokens and this server keep separate clocks, which NTP keeps
/// within a second or two; 30 s covers a badly synchronised machine without
/// noticeably lengthening a token's life.
pub const JWT_LEEWAY: Duration = Duration::from_secs(30);

/// Lifetime of a token made by `threadchat token` when `--ttl` is not given:
/// one sitting at the chat, after which the page asks for a fresh token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);

/// Longest lifetime `threadchat token` will sign. The server keeps no list of
/// revoked tokens, so a leaked token works until it expires; 30 days bounds
/// that and still covers a bot that runs for a month.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Longest a token the server accepts may live (`--jwt-max-lifetime`),
/// counted from its `iat` or from now, whichever is earlier. The server keeps
/// no list of revoked tokens, so this bounds how long a leaked token opens
/// the chat, whoever issued it; it equals `MAX_TOKEN_TTL`, so every token
/// `threadchat token` makes is accepted.
pub const DEFAULT_JWT_MAX_LIFETIME: Duration = MAX_TOKEN_TTL;

/// Shortest HS256 secret accepted, in bytes; a shorter one stops the server
/// at start-up and `threadchat token`. RFC 7518 (section 3.2) requires a key
/// at least as long as the hash (256 bits); a shorter one can be found by
/// brute force from any token seen, and then anyone can sign in as anyone.
/// `openssl rand -base64 32` makes one.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Smallest RSA public key accepted for RS256, in bits: keys below 2048 bits
/// are no longer considered safe (NIST SP 800-131A).
pub const MIN_RSA_KEY_BITS: usize = 2048;

/// Refused sign-ins (bad or expired tokens) one connection may make before
/// it is closed with 1008: enough for a person who pasted the wrong token,
/// too few for a script to try tokens at leisure.
pub const MAX_LOGIN_FAILURES: u32 = 5;

/// Most characters of a token's `alg` quoted back in a refusal: the header
/// is the sender's text, and a refusal should not carry much of it; 16 is
/// longer than any real algorithm name, so the sender still sees what went
/// wrong.
pub const ALG_QUOTE_CHARS: usize = 16;

/// Most characters of a refused token's reason put in a `WWW-Authenticate`
/// header: the reasons are one sentence, well under this; the bound keeps
/// the header short whatever a reason quotes.
pub const AUTH_REASON_HEADER_CHARS: usize = 200;
