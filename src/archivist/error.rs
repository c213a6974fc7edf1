//! A history file that cannot be served: which file, what is wrong with it
//! in a sentence, and the kind of wrong, so that a caller can tell a locked
//! file from a damaged one without reading the sentence. Only `open` makes
//! one, at start-up, so a bad file stops the server before it listens; once
//! running, the archivist reports a failed write per chat
//! (`Archived::Failed`) instead.

use std::fmt;

/// Why the history file could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveErrorKind {
    /// Not an SQLite file, or a damaged one.
    NotADatabase,
    /// Another process (another server) has the file open.
    Locked,
    /// A schema this server does not know: newer, or not threadchat's.
    SchemaVersion,
    /// The file or its directory cannot be created or written.
    Unwritable,
    /// Anything else SQLite reported.
    Other,
}

/// A start-up error: which file, and what is wrong with it.
#[derive(Debug, Clone)]
pub struct ArchiveError {
    pub kind: ArchiveErrorKind,
    pub path: String,
    /// What is wrong, in a sentence.
    pub cause: String,
}

impl ArchiveError {
    pub(super) fn new(kind: ArchiveErrorKind, path: &str, cause: String) -> ArchiveError {
        ArchiveError {
            kind,
            path: path.to_string(),
            cause,
        }
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history database {}: {}", self.path, self.cause)
    }
}

impl std::error::Error for ArchiveError {}
