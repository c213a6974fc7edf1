//! Sign-in tokens, through `threadchat::auth`'s public API, with real
//! cryptography: one test per rule a token must pass, each next to a control
//! that passes, so that no refusal is the accident of a broken token.
//!
//! HS256 tokens are built here by hand (HMAC-SHA256 from the `hmac` and
//! `sha2` crates), independently of the `jsonwebtoken` crate the server uses,
//! so a hand-built token can say anything (`"alg":"none"`, a bad `exp`).
//! RS256 and EdDSA tokens are signed with the keys in `tests/fixtures/auth/`
//! (see the README there).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use threadchat::auth::{self, AuthConfig, AuthError, AuthFailure, Identity};

const SECRET: &[u8] = b"integration-test-secret-0123456789abcdef";
const OTHER_SECRET: &[u8] = b"another-secret-of-enough-length-0123456789";

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/auth/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/auth/rsa_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("fixtures/auth/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("fixtures/auth/ed25519_public.pem");
const OTHER_ED_PRIVATE: &[u8] = include_bytes!("fixtures/auth/other_ed25519_private.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A token with this header and payload, signed with HMAC-SHA256 by hand.
fn signed(secret: &[u8], header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = hmac_sha256(secret, message.as_bytes());
    format!("{message}.{}", b64(&signature))
}

fn hs256(claims: &Value) -> String {
    signed(SECRET, &json!({"alg": "HS256", "typ": "JWT"}), claims)
}

/// Claims every check passes: change one field to test one rule.
fn good_claims() -> Value {
    json!({"sub": "walter", "exp": now() + 3600})
}

fn config() -> AuthConfig {
    AuthConfig::hs256(SECRET).unwrap()
}

fn accepted(config: &AuthConfig, token: &str) -> Identity {
    match config.verify(token) {
        Ok(identity) => identity,
        Err(e) => panic!("a good token was refused: {e}"),
    }
}

/// The refusal of `token`, checked to be of the expected kind and never to
/// repeat the token, or its signature, in its text or Debug form.
fn refused(config: &AuthConfig, token: &str, failure: AuthFailure) -> AuthError {
    let err = match config.verify(token) {
        Ok(identity) => panic!("expected {failure:?}, but the token was accepted: {identity:?}"),
        Err(err) => err,
    };
    assert_eq!(err.failure(), failure, "details: {}", err.details());
    let shown = format!("{err} {err:?}");
    for part in token.split('.').filter(|part| part.len() > 8) {
        assert!(
            !shown.contains(part),
            "the refusal repeats the token: {shown}"
        );
    }
    err
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[test]
fn a_good_token_gives_the_username_and_expiry() {
    let exp = now() + 3600;
    let identity = accepted(&config(), &hs256(&json!({"sub": "walter", "exp": exp})));
    assert_eq!(identity.username, "walter");
    assert_eq!(identity.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
    assert_eq!(identity.follows, None);
    // A token pasted with a line break still works.
    let token = format!("{}\n", hs256(&good_claims()));
    assert_eq!(accepted(&config(), &token).username, "walter");
}

#[test]
fn no_token_is_refused() {
    for token in ["", "   ", "\n"] {
        let err = refused(&config(), token, AuthFailure::NoToken);
        assert!(err.details().starts_with("no token"), "{err}");
    }
    assert_eq!(auth::AuthError::no_token().failure(), AuthFailure::NoToken);
}

#[test]
fn malformed_tokens_are_refused() {
    let good = hs256(&good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let not_json = b64(b"not json");
    let cases = [
        "walter".to_string(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!("!!!.{}.{}", parts[1], parts[2]),
        format!("{not_json}.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", b64(br#"{"typ":"JWT"}"#), parts[1], parts[2]),
        format!("{}.{}.not*base64", parts[0], parts[1]),
        // Correctly signed, but the payload is not a JSON object.
        signed(SECRET, &json!({"alg": "HS256"}), &json!(["sub", "walter"])),
    ];
    for token in cases {
        let err = refused(&config(), &token, AuthFailure::Malformed);
        assert!(err.details().starts_with("malformed token"), "{err}");
    }
}

#[test]
fn alg_none_is_refused() {
    // The classic forgery: no signature at all, and a header that says so.
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(good_claims().to_string().as_bytes());
    let err = refused(
        &config(),
        &format!("{header}.{payload}."),
        AuthFailure::Algorithm,
    );
    assert!(err.details().contains("\"none\""), "{err}");
    assert!(err.details().contains("HS256"), "{err}");
    // With a signature made up, or signed with the secret, still refused.
    let token = signed(SECRET, &json!({"alg": "none"}), &good_claims());
    refused(&config(), &token, AuthFailure::Algorithm);
}

#[test]
fn another_algorithm_than_the_configured_one_is_refused() {
    for alg in ["HS512", "HS384", "RS256", "EdDSA", "hs256", "None"] {
        let token = signed(SECRET, &json!({"alg": alg}), &good_claims());
        let err = refused(&config(), &token, AuthFailure::Algorithm);
        assert!(err.details().starts_with("wrong algorithm"), "{err}");
    }
}

#[test]
fn a_token_signed_with_another_secret_is_refused() {
    let token = signed(OTHER_SECRET, &json!({"alg": "HS256"}), &good_claims());
    let err = refused(&config(), &token, AuthFailure::Signature);
    assert!(err.details().starts_with("bad signature"), "{err}");
    // The same token is good for the server that has that secret.
    accepted(&AuthConfig::hs256(OTHER_SECRET).unwrap(), &token);
}

#[test]
fn a_tampered_payload_or_signature_is_refused() {
    let good = hs256(&good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let admin = b64(with(good_claims(), "sub", json!("admin"))
        .to_string()
        .as_bytes());
    let tampered = format!("{}.{admin}.{}", parts[0], parts[2]);
    refused(&config(), &tampered, AuthFailure::Signature);

    // One character of the signature changed.
    let mut signature: Vec<char> = parts[2].chars().collect();
    signature[5] = if signature[5] == 'A' { 'B' } else { 'A' };
    let signature: String = signature.into_iter().collect();
    let tampered = format!("{}.{}.{signature}", parts[0], parts[1]);
    refused(&config(), &tampered, AuthFailure::Signature);
}

#[test]
fn a_token_expired_beyond_the_leeway_is_refused() {
    let token = hs256(&with(good_claims(), "exp", json!(now() - 120)));
    let err = refused(&config(), &token, AuthFailure::Expired);
    assert_eq!(err.details(), "token expired");
}

#[test]
fn a_token_expired_within_the_leeway_is_accepted() {
    let token = hs256(&with(good_claims(), "exp", json!(now() - 10)));
    accepted(&config(), &token);
    // The leeway is what accepted it: without one, it is refused.
    let strict = config().with_leeway(Duration::ZERO);
    refused(&strict, &token, AuthFailure::Expired);
}

#[test]
fn a_token_not_yet_valid_is_refused() {
    let token = hs256(&with(good_claims(), "nbf", json!(now() + 300)));
    let err = refused(&config(), &token, AuthFailure::NotYetValid);
    assert!(err.details().contains("nbf"), "{err}");
    // nbf in the past, or within the leeway, is fine.
    accepted(
        &config(),
        &hs256(&with(good_claims(), "nbf", json!(now() - 5))),
    );
    let soon = hs256(&with(good_claims(), "nbf", json!(now() + 10)));
    accepted(&config(), &soon);
    refused(
        &config().with_leeway(Duration::ZERO),
        &soon,
        AuthFailure::NotYetValid,
    );
}

#[test]
fn the_issuer_must_be_the_configured_one() {
    let config = config().with_issuer(Some("https://login.example".to_string()));
    let right = with(good_claims(), "iss", json!("https://login.example"));
    accepted(&config, &hs256(&right));

    let wrong = with(good_claims(), "iss", json!("https://evil.example"));
    let err = refused(&config, &hs256(&wrong), AuthFailure::Issuer);
    assert!(err.details().contains("issuer (iss)"), "{err}");
    let err = refused(&config, &hs256(&good_claims()), AuthFailure::Issuer);
    assert!(err.details().starts_with("missing issuer"), "{err}");
}

#[test]
fn the_audience_must_be_the_configured_one() {
    let config = config().with_audience(Some("threadchat".to_string()));
    accepted(
        &config,
        &hs256(&with(good_claims(), "aud", json!("threadchat"))),
    );
    // aud may be a list that contains ours.
    accepted(
        &config,
        &hs256(&with(good_claims(), "aud", json!(["wiki", "threadchat"]))),
    );

    let wrong = with(good_claims(), "aud", json!("wiki"));
    let err = refused(&config, &hs256(&wrong), AuthFailure::Audience);
    assert!(err.details().contains("audience (aud)"), "{err}");
    let err = refused(&config, &hs256(&good_claims()), AuthFailure::Audience);
    assert!(err.details().starts_with("missing audience"), "{err}");

    // A token meant for some audience is refused by a server that was told
    // of none (RFC 7519, 4.1.3).
    let aimed = hs256(&with(good_claims(), "aud", json!("wiki")));
    refused(&self::config(), &aimed, AuthFailure::Audience);
}

#[test]
fn a_token_without_exp_is_refused() {
    let err = refused(
        &config(),
        &hs256(&without(good_claims(), "exp")),
        AuthFailure::MissingExpiry,
    );
    assert!(err.details().contains("exp"), "{err}");
    for bad in [json!("tomorrow"), json!(null), json!(-5)] {
        let token = hs256(&with(good_claims(), "exp", bad));
        refused(&config(), &token, AuthFailure::MissingExpiry);
    }
    // jsonwebtoken calls an exp of another JSON type a malformed claim set.
    let token = hs256(&with(good_claims(), "exp", json!([now() + 60])));
    refused(&config(), &token, AuthFailure::Malformed);
    // An exp beyond what the clock can hold is refused, not a panic.
    let far = hs256(&with(good_claims(), "exp", json!(u64::MAX - 1)));
    refused(&config(), &far, AuthFailure::MissingExpiry);
}

#[test]
fn the_subject_must_be_a_valid_username() {
    let err = refused(
        &config(),
        &hs256(&without(good_claims(), "sub")),
        AuthFailure::Subject,
    );
    assert!(err.details().starts_with("missing subject (sub)"), "{err}");
    let cases = [
        (json!(42), "a username"),
        (json!(""), "must not be empty"),
        (json!("   "), "must not be empty"),
        (json!("w".repeat(33)), "at most 32 characters"),
        (json!("wal\nter"), "control characters"),
        (json!("walter\u{0}"), "control characters"),
    ];
    for (sub, why) in cases {
        let token = hs256(&with(good_claims(), "sub", sub));
        let err = refused(&config(), &token, AuthFailure::Subject);
        assert!(err.details().starts_with("invalid subject (sub)"), "{err}");
        assert!(err.details().contains(why), "{err}");
    }
    // The longest name allowed, and one trimmed like any username.
    let longest = "w".repeat(32);
    let token = hs256(&with(good_claims(), "sub", json!(longest)));
    assert_eq!(accepted(&config(), &token).username, longest);
    let token = hs256(&with(good_claims(), "sub", json!("  Walter ")));
    assert_eq!(accepted(&config(), &token).username, "Walter");
}

#[test]
fn follows_is_a_list_of_usernames() {
    let token = hs256(&with(good_claims(), "follows", json!(["maria", "laura"])));
    let identity = accepted(&config(), &token);
    assert_eq!(
        identity.follows,
        Some(vec!["maria".to_string(), "laura".to_string()])
    );
    let empty = hs256(&with(good_claims(), "follows", json!([])));
    assert_eq!(accepted(&config(), &empty).follows, Some(vec![]));
    let null = hs256(&with(good_claims(), "follows", json!(null)));
    assert_eq!(accepted(&config(), &null).follows, None);

    for bad in [
        json!("maria,laura"),
        json!({"maria": true}),
        json!(3),
        json!(["maria", 3]),
        json!(["maria", ""]),
    ] {
        let token = hs256(&with(good_claims(), "follows", bad));
        let err = refused(&config(), &token, AuthFailure::Follows);
        assert!(err.details().starts_with("invalid follows"), "{err}");
    }
}

fn signed_with_pem(alg: jsonwebtoken::Algorithm, private_pem: &[u8], claims: &Value) -> String {
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(private_pem),
        _ => jsonwebtoken::EncodingKey::from_ed_pem(private_pem),
    }
    .unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &key).unwrap()
}

#[test]
fn rs256_tokens_are_checked_with_an_rsa_public_key() {
    let config = AuthConfig::from_public_key_pem(RSA_PUBLIC).unwrap();
    assert_eq!(config.algorithm_name(), "RS256");
    let claims = with(good_claims(), "follows", json!(["maria"]));
    let token = signed_with_pem(jsonwebtoken::Algorithm::RS256, RSA_PRIVATE, &claims);
    let identity = accepted(&config, &token);
    assert_eq!(identity.username, "walter");
    assert_eq!(identity.follows, Some(vec!["maria".to_string()]));

    // The claim checks apply as for HS256.
    let expired = with(good_claims(), "exp", json!(now() - 120));
    let token = signed_with_pem(jsonwebtoken::Algorithm::RS256, RSA_PRIVATE, &expired);
    refused(&config, &token, AuthFailure::Expired);
    // An EdDSA token is not for an RSA key.
    let token = signed_with_pem(jsonwebtoken::Algorithm::EdDSA, ED_PRIVATE, &good_claims());
    refused(&config, &token, AuthFailure::Algorithm);
}

#[test]
fn eddsa_tokens_are_checked_with_an_ed25519_public_key() {
    let config = AuthConfig::from_public_key_pem(ED_PUBLIC).unwrap();
    assert_eq!(config.algorithm_name(), "EdDSA");
    let token = signed_with_pem(jsonwebtoken::Algorithm::EdDSA, ED_PRIVATE, &good_claims());
    assert_eq!(accepted(&config, &token).username, "walter");

    let forged = signed_with_pem(
        jsonwebtoken::Algorithm::EdDSA,
        OTHER_ED_PRIVATE,
        &good_claims(),
    );
    refused(&config, &forged, AuthFailure::Signature);
    let token = signed_with_pem(jsonwebtoken::Algorithm::RS256, RSA_PRIVATE, &good_claims());
    refused(&config, &token, AuthFailure::Algorithm);
}

#[test]
fn an_hs256_token_is_refused_when_a_public_key_is_configured() {
    // Algorithm confusion: the attacker knows the public key (it is public)
    // and uses its bytes as an HMAC secret. A server that took the
    // algorithm from the token would check that HMAC and accept it.
    for public in [RSA_PUBLIC, ED_PUBLIC] {
        let config = AuthConfig::from_public_key_pem(public).unwrap();
        let token = signed(
            public,
            &json!({"alg": "HS256", "typ": "JWT"}),
            &good_claims(),
        );
        let err = refused(&config, &token, AuthFailure::Algorithm);
        assert!(err.details().contains("\"HS256\""), "{err}");
    }
    // And the other way round: an HS256 server takes no RS256 token.
    let token = signed_with_pem(jsonwebtoken::Algorithm::RS256, RSA_PRIVATE, &good_claims());
    refused(&config(), &token, AuthFailure::Algorithm);
}

#[test]
fn a_minted_token_passes_an_independent_check() {
    let follows = vec!["maria".to_string(), "laura".to_string()];
    let before = now();
    let token = auth::mint(
        SECRET,
        "walter",
        Duration::from_secs(2 * 3600),
        Some(follows.clone()),
        None,
        None,
    )
    .unwrap();
    let after = now();

    // Recompute the HMAC over header.payload and compare, without jsonwebtoken.
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(message.as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap())
        .expect("the signature is HMAC-SHA256 of header.payload with the secret");
    let mut other = Hmac::<Sha256>::new_from_slice(OTHER_SECRET).unwrap();
    other.update(message.as_bytes());
    assert!(
        other
            .verify_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap())
            .is_err()
    );

    let (header, payload) = message.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], "walter");
    let exp = claims["exp"].as_u64().unwrap();
    assert!(
        (before + 7200..=after + 7200).contains(&exp),
        "exp {exp} is not now + 2 h"
    );
    assert_eq!(claims["follows"], json!(follows));
    assert!(claims.get("iss").is_none() && claims.get("aud").is_none());

    // And the server's own check agrees.
    let identity = accepted(&config(), &token);
    assert_eq!(identity.follows, Some(follows));
}

#[test]
fn a_minted_token_with_issuer_and_audience_passes_a_server_that_requires_them() {
    let ttl = auth::parse_ttl("15m").unwrap();
    let token = auth::mint(SECRET, "walter", ttl, None, Some("me"), Some("chat")).unwrap();
    let (_, payload) = token.split_once('.').unwrap();
    let payload = payload.split_once('.').unwrap().0;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(
        (&claims["iss"], &claims["aud"]),
        (&json!("me"), &json!("chat"))
    );
    let strict = config()
        .with_issuer(Some("me".to_string()))
        .with_audience(Some("chat".to_string()));
    accepted(&strict, &token);
    let elsewhere = config().with_audience(Some("wiki".to_string()));
    refused(&elsewhere, &token, AuthFailure::Audience);
}

#[test]
fn debug_of_config_secret_and_refusal_never_shows_the_secret() {
    let config = config();
    let shown = format!("{config:?}");
    assert!(!shown.contains("integration-test-secret"), "{shown}");
    let secret = auth::secret_from(Some("integration-test-secret-0123456789abcdef"), None, None)
        .unwrap()
        .unwrap();
    let shown = format!("{secret:?}");
    assert!(!shown.contains("integration-test-secret"), "{shown}");
    assert_eq!(secret.as_bytes(), SECRET);
}
