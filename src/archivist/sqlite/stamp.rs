//! A chat as the store takes it: checked to be a JSON object, then given
//! its id and time, written into its text just before the final brace, so
//! that what is stored is byte for byte what is broadcast.

use super::Append;
use crate::archivist::Audience;
use crate::ids::ConnId;

/// An append found to be a JSON object, cut before its final brace.
pub(super) struct Checked {
    pub(super) room: String,
    pub(super) conn: ConnId,
    pub(super) audience: Audience,
    /// The chat's text without the final `}`.
    pub(super) body: String,
    /// What goes between the body and the added fields.
    pub(super) separator: &'static str,
}

/// Checks that an append's text is a JSON object's (UTF-8, `{` ... `}`).
/// A chat that is not is refused on its own, before it takes an id.
pub(super) fn check(append: Append) -> Result<Checked, (String, ConnId, String)> {
    let Append {
        room,
        conn,
        json,
        audience,
    } = append;
    let split = String::from_utf8(json)
        .map_err(|_| "the chat is not UTF-8 text")
        .and_then(|text| {
            let (len, separator) = split_object(&text)?;
            let mut body = text;
            body.truncate(len);
            Ok((body, separator))
        });
    match split {
        Ok((body, separator)) => Ok(Checked {
            room,
            conn,
            audience,
            body,
            separator,
        }),
        Err(reason) => Err((room, conn, reason.to_string())),
    }
}

/// The length of `text` without its final brace (and the blanks after it),
/// and the separator to put before the added fields (none when the object
/// is empty); an error if `text` is not `{` ... `}`.
fn split_object(text: &str) -> Result<(usize, &'static str), &'static str> {
    let body = text
        .trim_end()
        .strip_suffix('}')
        .filter(|_| text.trim_start().starts_with('{'))
        .ok_or("the chat is not a JSON object")?;
    let separator = if body.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    Ok((body.len(), separator))
}

/// The chat's text with its id and time added before the final brace.
pub(super) fn stamp(body: &str, separator: &str, id: u64, ts: u64) -> String {
    format!("{body}{separator}\"id\":{id},\"ts\":{ts}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_adds_id_and_ts_before_the_final_brace() {
        let text = r#"{"type":"chat","text":"}"} "#;
        let (len, sep) = split_object(text).unwrap();
        assert_eq!(
            stamp(&text[..len], sep, 7, 1000),
            r#"{"type":"chat","text":"}","id":7,"ts":1000}"#
        );
        let (len, sep) = split_object("{ }").unwrap();
        assert_eq!(stamp(&"{ }"[..len], sep, 1, 2), r#"{ "id":1,"ts":2}"#);
    }

    #[test]
    fn what_is_not_a_json_object_is_refused() {
        let refused = |json: &[u8]| {
            check(Append {
                room: "a".into(),
                conn: 3,
                json: json.to_vec(),
                audience: Audience::Room,
            })
            .err()
            .map(|(_, conn, reason)| (conn, reason))
        };
        let not_object = Some((3, "the chat is not a JSON object".to_string()));
        assert_eq!(refused(b"[1]"), not_object);
        assert_eq!(refused(b"{\"a\":1"), not_object);
        assert_eq!(refused(b""), not_object);
        assert_eq!(refused(b"}"), not_object);
        assert_eq!(
            refused(b"{\"a\":\"\xff\"}"),
            Some((3, "the chat is not UTF-8 text".to_string()))
        );
        assert_eq!(refused(b" {} \n"), None);
    }
}
