//! A tail amended by moderation: a deleted chat taken out, an edited one
//! replaced by its new text, so that a newcomer is shown what the store
//! now holds (`dispatcher/moderation/`). Here rather than in the tail's
//! own file, which is about loading and serving it.

use bytes::Bytes;

use super::{RecentHistory, TailState};

impl RecentHistory {
    /// A chat deleted by moderation: out of the tail, and of the chats
    /// held for an answer, so that no newcomer is shown it.
    pub fn forget(&mut self, id: u64) {
        if let Some(position) = self.chats.iter().position(|c| c.id == id)
            && let Some(chat) = self.chats.remove(position)
        {
            self.bytes -= chat.json.len();
        }
        if let TailState::Loading { early, .. } | TailState::CatchingUp { early } = &mut self.state
        {
            early.retain(|c| c.id != id);
        }
    }

    /// A chat edited by its author: the text the store now holds for it
    /// replaces the one held here.
    pub fn replace(&mut self, id: u64, json: Bytes) {
        for chat in self.chats.iter_mut().filter(|c| c.id == id) {
            self.bytes = (self.bytes + json.len()).saturating_sub(chat.json.len());
            chat.json = json.clone();
        }
        if let TailState::Loading { early, .. } | TailState::CatchingUp { early } = &mut self.state
        {
            for chat in early.iter_mut().filter(|c| c.id == id) {
                chat.json = json.clone();
            }
        }
    }
}
