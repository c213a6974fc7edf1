//! The HTTP side of the one port: the pages, the JSON API, the operator's
//! endpoints, and the WebSocket handshake.
//!
//! Every connection starts as an HTTP request, read and answered on the
//! connection's own thread. A plain `GET` gets a page or a JSON answer and
//! the connection closes; a WebSocket upgrade gets `101 Switching Protocols`
//! and becomes a chat connection (`connection/`).
//!
//! A request's way through these files:
//!
//! - `request.rs`: the request head, read from the socket and parsed;
//! - `forwarded.rs`: who the client is behind a trusted proxy (`Forwarded`,
//!   `X-Forwarded-For`);
//! - `routes.rs`: what the request gets (`route`; `admin_route` for the
//!   operator's endpoints);
//! - `handshake.rs`: a WebSocket upgrade checked, and its 101 built;
//! - `pages.rs`: the pages compiled into the binary, and their security
//!   headers;
//! - `api.rs`: the JSON endpoints, answered by asking the thread that owns
//!   the data; `access.rs`: who may read them (a bearer token, with
//!   sign-in on);
//! - `admin.rs`: `/metrics`, `/healthz`, `/readyz` and `/api/stats`;
//! - `response.rs`: a response built, and the connection closed after it
//!   without losing it.

mod access;
pub mod admin;
pub mod api;
mod forwarded;
mod handshake;
pub mod moderation;
mod pages;
mod request;
mod response;
mod routes;

pub use access::{Credentials, Reader};
pub use forwarded::client_address;
pub use pages::{InsidePage, inside_page};
pub use request::{HeadError, RequestHead, parse_request_head, read_request_head};
pub use response::{json_response, linger_close_stream, response, status_response, with_header};
pub use routes::{AdminRequest, ApiRequest, Route, admin_route, route};
