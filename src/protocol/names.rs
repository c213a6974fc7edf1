//! Usernames: what a name may be, and when two names are the same person.
//!
//! A name is what the room sees of a person, so it must not be a way to
//! pass for someone else. Three rules, each with the Unicode data that
//! decides it rather than hand-written tables:
//!
//! - it is normalised (NFC, `unicode-normalization`), so that `é` typed as
//!   one character or as `e` and a combining accent is one name;
//! - it holds nothing invisible: no control or format characters (zero-width
//!   spaces and joiners, the bidi overrides such as U+202E that reverse the
//!   text after them), no separators but the plain space, nothing private or
//!   unassigned, and no default-ignorable character that renders as nothing
//!   (the Hangul fillers used as blank names): general categories from
//!   `unicode-properties`, the ignorable set from `unicode-security`;
//! - uniqueness compares a folded form (`username_key`): lower case, then
//!   the confusable skeleton of UTS #39 (`unicode-security`), so `Walter`,
//!   `walter` and `wаlter` with a Cyrillic `а` are one name in a room.
//!
//! The alternative rejected: allowing only ASCII. It would be simplest and
//! safe, and wrong for a class whose students write their names in Greek,
//! Chinese or with accents.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::GeneralSecurityProfile;
use unicode_security::confusable_detection::skeleton;
use unicode_security::general_security_profile::IdentifierType;

use super::{Reason, Refusal, RequestKind};
use crate::config::MAX_USERNAME_CHARS;

/// Trims a username, normalises it and checks it: 1 to 32 characters,
/// nothing invisible. Uniqueness is the dispatcher's to check, as only it
/// knows who is online.
pub fn validate_username(raw: &str) -> Result<String, Refusal> {
    let name: String = raw.trim().nfc().collect();
    let refuse = |details: String| {
        Err(Refusal::new(
            Some(RequestKind::Login),
            Reason::InvalidUsername,
            details,
        ))
    };
    if name.is_empty() {
        return refuse("a username must not be empty".to_string());
    }
    let chars = name.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return refuse(format!(
            "a username has at most {MAX_USERNAME_CHARS} characters; this one has {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return refuse("a username must not contain control characters".to_string());
    }
    if let Some(c) = name.chars().find(|&c| invisible(c)) {
        return refuse(format!(
            "a username must not contain invisible or formatting characters (U+{:04X})",
            c as u32
        ));
    }
    Ok(name)
}

/// Whether `c` shows as nothing, or changes how the text around it shows.
fn invisible(c: char) -> bool {
    let hidden_category = matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
    );
    let odd_space = c != ' ' && c.general_category() == GeneralCategory::SpaceSeparator;
    let ignorable = c.identifier_type() == Some(IdentifierType::Default_Ignorable);
    hidden_category || odd_space || ignorable
}

/// The key under which usernames are compared: "Walter", "walter" and
/// "wаlter" (a Cyrillic а) are the same person as far as uniqueness goes.
pub fn username_key(name: &str) -> String {
    let lower = name.to_lowercase();
    skeleton(&lower).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_so_one_spelling_is_one_name() {
        let composed = validate_username("Jos\u{e9}").unwrap();
        let decomposed = validate_username("Jose\u{301}").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(composed, "José");
    }

    #[test]
    fn invisible_and_reordering_characters_are_refused() {
        for name in [
            "wal\u{200B}ter", // zero-width space
            "wal\u{200D}ter", // zero-width joiner
            "\u{202E}retlaw", // right-to-left override
            "wal\u{2066}ter", // left-to-right isolate
            "\u{3164}",       // Hangul filler, shown as a blank
            "wal\u{00A0}ter", // no-break space
            "wal\u{2028}ter", // line separator
            "wal\u{E000}ter", // private use
            "\u{FEFF}walter", // byte order mark
        ] {
            let refusal = validate_username(name).unwrap_err();
            assert_eq!(refusal.reason, Reason::InvalidUsername, "{name:?}");
        }
        for name in [
            "Walter White",
            "José",
            "Ελένη",
            "李雷",
            "o'Brien-2",
            "🦀 crab",
        ] {
            assert!(validate_username(name).is_ok(), "{name:?} refused");
        }
    }

    #[test]
    fn confusable_names_are_one_name() {
        assert_eq!(username_key("walter"), username_key("Walter"));
        assert_eq!(username_key("walter"), username_key("w\u{430}lter")); // Cyrillic а
        assert_eq!(username_key("paypal"), username_key("p\u{430}yp\u{430}l"));
        assert_ne!(username_key("walter"), username_key("walker"));
    }
}
