//! A room's broadcasts waiting to be queued: one buffer of encoded frames,
//! shared by every member it is for.
//!
//! While more events are waiting, the frames of consecutive broadcasts are
//! appended to one buffer and queued for every member once, at the room's
//! flush. A batch may span logins: members are in join order and a login
//! only adds at the end, so between two flushes the audience only grows.
//! The members present at the start of the batch get all of it, and one who
//! joined midway gets the part from its own login on, a suffix of the same
//! buffer (`Segment`). Anything that removes a member, which would break
//! that rule, flushes first (`room.rs`).
//!
//! A room keeps two of these: one for the members who hear presence as the
//! tutorial's whole lists, one for those who asked for changes (they get
//! the chats, and no `login` or `disconnect` frames). A room whose members
//! all hear presence one way fills only that one, so a chat is still
//! copied once.

use crate::protocol::{self, Frame};

/// The frames in the batch from `start` on were broadcast while `audience`
/// members (the first `audience` of the room's members) were logged in, or
/// more.
struct Segment {
    start: usize,
    audience: usize,
    /// Frames in the batch before `start`, to count deliveries.
    frames_before: usize,
}

/// Encoded frames, not yet queued, and who gets which part of them.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    segments: Vec<Segment>,
    frames: usize,
}

/// A batch taken out to be queued: the shared buffer and its segments.
pub struct Taken {
    bytes: Frame,
    segments: Vec<Segment>,
    frames: usize,
}

impl Batch {
    /// Appends one message for the first `audience` members.
    pub fn append(&mut self, json: &[u8], audience: usize) {
        if self.segments.last().is_none_or(|s| s.audience != audience) {
            self.segments.push(Segment {
                start: self.bytes.len(),
                audience,
                frames_before: self.frames,
            });
        }
        protocol::append_text_frame(&mut self.bytes, json);
        self.frames += 1;
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Empties the batch into one shared buffer.
    pub fn take(&mut self) -> Taken {
        Taken {
            bytes: Frame::from(std::mem::take(&mut self.bytes)),
            segments: std::mem::take(&mut self.segments),
            frames: std::mem::take(&mut self.frames),
        }
    }
}

impl Taken {
    /// The part for the member at `position` (in join order), and how many
    /// frames it holds; `None` if it joined after the whole batch.
    pub fn part(&self, position: usize) -> Option<(Frame, usize)> {
        // Audiences only grow, so the first segment that includes this
        // position starts this member's part.
        let first = self.segments.partition_point(|s| s.audience <= position);
        let segment = self.segments.get(first)?;
        Some((
            self.bytes.slice(segment.start..),
            self.frames - segment.frames_before,
        ))
    }
}
