//! The numbers of moderation (`dispatcher/moderation/`), each with its
//! reason.

/// `--edit-window`: seconds after sending a chat during which its author
/// may edit or delete it (moderators delete any chat at any time). Fifteen
/// minutes fixes a typo or takes back a hasty message; later, others have
/// read and answered it, and a changed text would change what they answered.
pub const DEFAULT_EDIT_WINDOW_SECONDS: u64 = 900;

/// Longest mute: a day. A mute quiets someone for a class session; longer
/// than that is a ban's job, which also keeps them out of the room.
pub const MAX_MUTE_SECONDS: u64 = 86_400;

/// Longest ban: 180 days, a term and then some. Every ban ends, so a
/// forgotten one does not outlive the course; a moderator may ban again.
pub const MAX_BAN_SECONDS: u64 = 180 * 86_400;

/// Longest reason a kick or a ban may give, in characters. It is sent to
/// the room and, cut to what fits, in the close frame (123 bytes at most);
/// a sentence is enough, and it keeps the audit log's rows small.
pub const MAX_MODERATION_REASON_CHARS: usize = 200;

/// Most rows one `GET /api/rooms/<r>/moderation` answers (the newest); an
/// audit log is read by a person or a script, page by page with `before`.
pub const AUDIT_PAGE_MAX: usize = 500;

/// Largest body the operator's `POST` takes: a moderation command is a few
/// hundred bytes, an edit at most a chat's text (2,000 characters, escaped);
/// anything larger is refused (413) before it is read.
pub const MAX_ADMIN_BODY_BYTES: usize = 32 * 1024;

/// Shortest operator token (`--admin-token-file`), in bytes: as for an
/// HS256 secret, 32 random bytes cannot be guessed, however many requests
/// an attacker sends.
pub const MIN_OPERATOR_TOKEN_BYTES: usize = 32;
