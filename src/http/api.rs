//! The JSON endpoints: answered by asking the thread that owns the data.
//!
//! `GET /api/rooms` wants to know which rooms have users, and only the
//! dispatcher knows; `GET /api/rooms/<name>/messages` wants older chats, and
//! only the archivist may read the history file. The connection's own thread
//! (which read the request) asks the owner (`crate::ask`: a question that
//! carries a one-shot reply channel, and a wait of at most `API_TIMEOUT`),
//! and writes the response itself. The owner spends a moment answering and
//! never waits on the HTTP client; the waiting happens on the thread that
//! would wait anyway.
//!
//! The alternative rejected: a copy of the room list behind a `Mutex` (or an
//! `RwLock`) that the dispatcher keeps up to date for readers. It would cost
//! the dispatcher a lock on every login and leave, to serve a request that
//! is rare; asking is cheaper, and it keeps one owner per piece of state.
//!
//! With sign-in on, the rooms and their history are for signed-in readers
//! only (`access.rs`): the reader is found before any owner is asked, and
//! sees only the rooms its token opens. `/api/info` stays open: the page
//! needs it to know that it must ask for a token.

use crossbeam_channel::Sender;
use log::warn;
use serde::Serialize;
use serde_json::value::RawValue;

use super::access::{self, Credentials};
use crate::archivist::Read;
use crate::ask::{Unanswered, ask, try_ask};
use crate::auth::AuthConfig;
use crate::config::{API_TIMEOUT, Config, MAX_ROOM_NAME_CHARS};
use crate::dispatcher::Event;
use crate::http::{self, ApiRequest};
use crate::protocol::RoomSummary;

/// The owners it may ask: the dispatcher (`events`) and, with history on,
/// the store's queue of reads (`store`: the archivist's, or the courier's);
/// and the sign-in check (`auth`, `None` with sign-in off), which decides
/// who may read.
pub struct Owners<'a> {
    pub events: &'a Sender<Event>,
    pub store: Option<&'a Sender<Read>>,
    pub auth: Option<&'a AuthConfig>,
}

/// Answers one API request, from a client that showed `credentials`;
/// returns the complete HTTP response.
pub fn answer(
    request: ApiRequest,
    credentials: &Credentials,
    owners: &Owners,
    config: &Config,
    include_body: bool,
) -> Vec<u8> {
    match request {
        ApiRequest::Rooms => {
            #[derive(Serialize)]
            struct Rooms {
                rooms: Vec<RoomSummary>,
            }
            let what = "/api/rooms";
            let reader = match access::reader(credentials, owners.auth, what, include_body) {
                Ok(reader) => reader,
                Err(refused) => return refused,
            };
            let question = |reply| Event::ListRooms { reply };
            match ask_owner(owners.events, question, what, "the chat is stopping") {
                Ok(mut rooms) => {
                    rooms.retain(|room| reader.may_read(&room.name));
                    json(&Rooms { rooms }, include_body)
                }
                Err(response) => response,
            }
        }
        ApiRequest::Messages {
            room,
            before,
            limit,
        } => {
            let what = "/api/rooms/…/messages";
            match access::reader(credentials, owners.auth, what, include_body) {
                Ok(reader) if reader.may_read(&room) => {}
                Ok(_) => return access::room_closed(&room, what, include_body),
                Err(refused) => return refused,
            }
            let Some(store) = owners.store else {
                return http::status_response("404 Not Found", "history is off on this server");
            };
            if config.mutual_follows {
                // Each chat reached only mutual followers; a page of them
                // for anyone who asks would undo that.
                return http::status_response(
                    "403 Forbidden",
                    "history is private with --mutual-follows",
                );
            }
            let question = |reply| Read::Page {
                room: room.clone(),
                before,
                limit,
                reply,
            };
            // Anyone may ask for pages, as often as they like: when the
            // store's queue of reads is full, the answer is 503 at once,
            // and the chats it stores never wait behind the crowd.
            let asked = try_ask(store, question, API_TIMEOUT)
                .map_err(|why| answer_unasked(why, what, "the history store is stopping"));
            let chats = match asked {
                Ok(Ok(chats)) => chats,
                Ok(Err(why)) => {
                    warn!("older messages of {room}: {why}");
                    return unavailable("the history store failed; see the server's log");
                }
                Err(response) => return response,
            };
            // Each stored chat is already JSON: embedded as it is.
            #[derive(Serialize)]
            struct Page<'a> {
                room: &'a str,
                messages: Vec<&'a RawValue>,
            }
            let texts: Vec<Option<&RawValue>> = chats
                .iter()
                .map(|c| {
                    std::str::from_utf8(&c.json)
                        .ok()
                        .and_then(|t| serde_json::from_str(t).ok())
                })
                .collect();
            let messages = texts.into_iter().flatten().collect();
            json(
                &Page {
                    room: &room,
                    messages,
                },
                include_body,
            )
        }
        ApiRequest::Info => {
            #[derive(Serialize)]
            struct Info<'a> {
                auth: &'static str,
                history: usize,
                /// `--edit-window` in seconds, for a page to offer edit and
                /// delete on its user's recent chats.
                edit_window: u64,
                room_name_pattern: String,
                #[serde(skip_serializing_if = "Option::is_none")]
                cluster: Option<&'a str>,
                #[serde(skip_serializing_if = "Option::is_none")]
                node: Option<&'a str>,
            }
            let info = Info {
                cluster: config.redis.as_ref().map(|_| config.cluster.as_str()),
                node: config.node.as_deref(),
                auth: if owners.auth.is_some() { "jwt" } else { "none" },
                history: config.history,
                edit_window: config.edit_window,
                room_name_pattern: format!("^[a-z0-9_-]{{1,{MAX_ROOM_NAME_CHARS}}}$"),
            };
            json(&info, include_body)
        }
    }
}

/// Asks an owner (`crate::ask`) for the answer to `what`, or makes the 503
/// that says why none came: `stopping` if the owner has stopped; if it did
/// not answer within `API_TIMEOUT`, a line in the log and a 503 that says so.
fn ask_owner<Q, A>(
    owner: &Sender<Q>,
    question: impl FnOnce(Sender<A>) -> Q,
    what: &str,
    stopping: &str,
) -> Result<A, Vec<u8>> {
    ask(owner, question, API_TIMEOUT).map_err(|why| answer_unasked(why, what, stopping))
}

/// The 503 that says why no answer came.
fn answer_unasked(why: Unanswered, what: &str, stopping: &str) -> Vec<u8> {
    match why {
        Unanswered::Gone => unavailable(stopping),
        Unanswered::Late => {
            warn!("{what}: no answer within {API_TIMEOUT:?}");
            unavailable("the server did not answer in time")
        }
        Unanswered::Busy => {
            warn!("{what}: refused, the owner's queue is full");
            unavailable("the server is busy; try again in a moment")
        }
    }
}

fn json(value: &impl Serialize, include_body: bool) -> Vec<u8> {
    let body = serde_json::to_vec(value).expect("API answers always serialize");
    http::json_response(&body, include_body)
}

fn unavailable(why: &str) -> Vec<u8> {
    http::status_response("503 Service Unavailable", why)
}
