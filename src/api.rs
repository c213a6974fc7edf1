//! The JSON endpoints: answered by asking the thread that owns the data.
//!
//! `GET /api/rooms` wants to know which rooms have users, and only the
//! dispatcher knows. The connection's own thread (which read the request)
//! sends the dispatcher an event carrying a one-shot reply channel, waits
//! for the answer with a timeout, and writes the response itself. The
//! dispatcher spends a few microseconds answering and never waits on the
//! HTTP client; the waiting happens on the thread that would wait anyway.
//!
//! The alternative rejected: a copy of the room list behind a `Mutex` (or
//! an `RwLock`) that the dispatcher keeps up to date for readers. It would
//! cost the dispatcher a lock on every login and leave, to serve a request
//! that is rare; asking is cheaper, and it keeps one owner per piece of state.

use crossbeam_channel::Sender;
use log::warn;

use crate::config::API_TIMEOUT;
use crate::dispatcher::{Event, RoomSummary};
use crate::http::{self, ApiRequest};

/// Answers one API request; returns the complete HTTP response.
pub fn answer(request: ApiRequest, events: &Sender<Event>, include_body: bool) -> Vec<u8> {
    match request {
        ApiRequest::Rooms => {
            let (reply, answer) = crossbeam_channel::bounded(1);
            if events.send(Event::ListRooms { reply }).is_err() {
                return unavailable("the chat is stopping");
            }
            match answer.recv_timeout(API_TIMEOUT) {
                Ok(rooms) => {
                    #[derive(serde::Serialize)]
                    struct Rooms {
                        rooms: Vec<RoomSummary>,
                    }
                    json(&Rooms { rooms }, include_body)
                }
                Err(_) => {
                    warn!("/api/rooms: the dispatcher did not answer within {API_TIMEOUT:?}");
                    unavailable("the chat did not answer in time")
                }
            }
        }
    }
}

fn json(value: &impl serde::Serialize, include_body: bool) -> Vec<u8> {
    let body = serde_json::to_vec(value).expect("API answers always serialize");
    http::json_response(&body, include_body)
}

fn unavailable(why: &str) -> Vec<u8> {
    http::status_response("503 Service Unavailable", why)
}
