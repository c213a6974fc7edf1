//! Keys: what the operator's secret or public key must be, and which
//! algorithm it means. This is where the rule "the algorithm comes from the
//! server's key, never from the token" is kept: `public_key` reads the
//! algorithm off the key's type, and nothing else here looks at a token.
//!
//! The checks are made at start-up, so that a key the server could not use
//! (a private key given by mistake, an EC key, an RSA key too short to be
//! safe) stops it with a sentence naming the problem, instead of every
//! sign-in failing later with "bad signature". Rejected: accepting any key
//! jsonwebtoken can parse, which defers those errors to the first token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::{MIN_JWT_SECRET_BYTES, MIN_RSA_KEY_BITS};

/// The key in a PEM public key, and the one algorithm it means: RS256 for
/// an RSA key (at least `MIN_RSA_KEY_BITS`), EdDSA for an Ed25519 key.
/// Anything else (a private key, an EC key, a short RSA key) is refused in
/// a sentence saying what was found.
pub(super) fn public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
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
        return Ok((key, Algorithm::EdDSA));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        let bits = rsa_modulus_bits(&key)?;
        if bits < MIN_RSA_KEY_BITS {
            return Err(format!(
                "the RSA public key has {bits} bits; at least {MIN_RSA_KEY_BITS} are needed"
            ));
        }
        return Ok((key, Algorithm::RS256));
    }
    Err(
        "not an RSA or Ed25519 public key (only RS256 and EdDSA are supported; \
         EC keys are not)"
            .to_string(),
    )
}

pub(super) fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        // An AuthConfig is only ever built with the three above.
        _ => "unsupported",
    }
}

/// An HS256 secret must be at least `MIN_JWT_SECRET_BYTES` long: a shorter
/// one can be found by brute force from any token, and then anyone can sign
/// in as anyone. Refused, not warned about: a class chat on the open
/// internet is exactly where a guessed secret would be tried. The error
/// gives the rule and the length, never the secret.
pub(super) fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.is_empty() {
        return Err("the JWT secret is empty".to_string());
    }
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(format!(
            "the JWT secret has {} bytes; HS256 needs at least {MIN_JWT_SECRET_BYTES} \
             (RFC 7518, section 3.2), as a shorter one can be found by brute force from \
             any token (make one with: openssl rand -base64 32)",
            secret.len()
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthConfig, mint};
    use std::time::Duration;

    #[test]
    fn empty_and_short_secrets_are_refused() {
        assert!(AuthConfig::hs256(b"").unwrap_err().contains("empty"));
        let hour = Duration::from_secs(3600);
        assert!(mint(b"", "walter", hour, None, None, None).is_err());
        let err = AuthConfig::hs256(b"s3cret").unwrap_err();
        assert!(
            err.contains("6 bytes") && err.contains("at least 32"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        let short = [7u8; MIN_JWT_SECRET_BYTES - 1];
        assert!(mint(&short, "walter", hour, None, None, None).is_err());
        assert!(AuthConfig::hs256(&[7u8; MIN_JWT_SECRET_BYTES]).is_ok());
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
