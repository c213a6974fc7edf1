//! Property tests: no input reachable from the network makes the parsers
//! panic, and what they accept obeys the rules.

use proptest::prelude::*;
use serde_json::json;
use threadchat::http::parse_request_head;
use threadchat::protocol::{
    Login, Request, RequestKind, TextLimits, parse_request, validate_username,
};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

const LIMITS: TextLimits = TextLimits {
    max_chat_chars: 2000,
    tokens: false,
};

/// JSON-ish text: mostly the protocol's own vocabulary, so that the fuzzer
/// reaches past the first `serde_json` error.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"type\"".to_string()),
        Just("\"login\"".to_string()),
        Just("\"chat\"".to_string()),
        Just("\"disconnect\"".to_string()),
        Just("\"username\"".to_string()),
        Just("\"text\"".to_string()),
        Just("null".to_string()),
        Just("1e999".to_string()),
        "\"[^\"]{0,8}\"",
        any::<String>(),
    ];
    prop::collection::vec(token, 0..24).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn parse_request_never_panics_on_any_string(text in any::<String>()) {
        let _ = parse_request(&text, LIMITS);
    }

    #[test]
    fn parse_request_never_panics_on_json_like_text(text in jsonish()) {
        let _ = parse_request(&text, LIMITS);
    }

    #[test]
    fn accepted_logins_are_trimmed_normalised_short_and_visible(name in any::<String>()) {
        let text = json!({"type": "login", "username": name}).to_string();
        if let Ok(Request::Login(Login { username, .. })) = parse_request(&text, LIMITS) {
            let normalised: String = name.trim().nfc().collect();
            prop_assert_eq!(username.as_str(), normalised.as_str());
            prop_assert!((1..=32).contains(&username.chars().count()));
            prop_assert!(!username.chars().any(char::is_control));
            prop_assert!(!username.chars().any(|c| c.general_category() == GeneralCategory::Format));
        }
    }

    #[test]
    fn accepted_chats_respect_the_length_limit_and_carry_no_claimed_name(
        text in ".{0,2100}", claimed in any::<String>()
    ) {
        let message = json!({"type": "chat", "text": text, "username": claimed}).to_string();
        match parse_request(&message, LIMITS) {
            Ok(Request::Chat { message }) => {
                prop_assert!(text.chars().count() <= 2000);
                prop_assert!(!message.contains_key("username"));
            }
            Ok(other) => prop_assert!(false, "a chat parsed as {:?}", other),
            Err(refusal) => prop_assert_eq!(refusal.request, Some(RequestKind::Chat)),
        }
    }

    #[test]
    fn validate_username_is_idempotent(name in any::<String>()) {
        if let Ok(clean) = validate_username(&name) {
            prop_assert_eq!(validate_username(&clean).ok(), Some(clean.clone()));
        }
    }

    #[test]
    fn request_head_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_request_head(&bytes);
    }

    #[test]
    fn request_head_parsing_never_panics_on_http_like_input(
        method in "[A-Z]{0,8}", path in "[ -~]{0,40}", headers in prop::collection::vec(("[ -~]{0,20}", "[ -~]{0,40}"), 0..40),
        tail in prop::collection::vec(any::<u8>(), 0..64)
    ) {
        let mut raw = format!("{method} {path} HTTP/1.1\r\n");
        for (name, value) in &headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(&tail);
        if let Ok(Some((head, consumed))) = parse_request_head(&bytes) {
            prop_assert!(consumed <= bytes.len());
            let _ = threadchat::http::route(&head, &[], Some("/echo"));
        }
    }
}
