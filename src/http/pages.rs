//! The pages the server serves from its own binary: the chat client, and
//! the live view of the server's insides (`/inside`), each with the security
//! headers that fence it in.
//!
//! The files are compiled in (`include_str!`), so the server runs from any
//! directory and a deployment is one file. The alternative, reading them
//! from disk at each request, would let a page be edited without a rebuild,
//! but would make the server's behaviour depend on its working directory.
//!
//! Each page is served with a Content-Security-Policy that allows only what
//! that page needs (the two policies below), and the same caching and
//! type headers (`serve`).

use super::response::response;

/// A file compiled into the binary, and the type it is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The browser client: the chat page, its script and its style.
pub const INDEX_HTML: Embedded = Embedded {
    content_type: HTML,
    body: include_str!("../../client/index.html"),
};
pub const CLIENT_JS: Embedded = Embedded {
    content_type: JAVASCRIPT,
    body: include_str!("../../client/client.js"),
};
pub const INDEX_CSS: Embedded = Embedded {
    content_type: CSS,
    body: include_str!("../../client/index.css"),
};
/// The page's moderation controls, a script of their own beside the chat's.
pub const MODERATION_JS: Embedded = Embedded {
    content_type: JAVASCRIPT,
    body: include_str!("../../client/moderation.js"),
};

/// The live view of the server's insides (`/inside`).
const INSIDE_HTML: Embedded = Embedded {
    content_type: HTML,
    body: include_str!("../../client/inside.html"),
};
const INSIDE_JS: Embedded = Embedded {
    content_type: JAVASCRIPT,
    body: include_str!("../../client/inside.js"),
};
const INSIDE_CSS: Embedded = Embedded {
    content_type: CSS,
    body: include_str!("../../client/inside.css"),
};

/// The page may load only its own files and talk only WebSocket: even if a
/// bug let a message be inserted as HTML, no injected script could run. No
/// other site may show it in a frame (`frame-ancestors`), so none can lay
/// its own buttons over the chat's (clickjacking).
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'";

/// The live view loads its own files and fetches `/api/stats`, nothing else.
const INSIDE_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// One of the live view's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsidePage {
    Html,
    Script,
    Style,
}

/// One of the chat page's files (`INDEX_HTML`, `CLIENT_JS`, `MODERATION_JS`,
/// `INDEX_CSS`).
pub fn chat_page(file: Embedded, include_body: bool) -> Vec<u8> {
    serve(file, CONTENT_SECURITY_POLICY, include_body)
}

/// One of the live view's files.
pub fn inside_page(page: InsidePage, include_body: bool) -> Vec<u8> {
    let file = match page {
        InsidePage::Html => INSIDE_HTML,
        InsidePage::Script => INSIDE_JS,
        InsidePage::Style => INSIDE_CSS,
    };
    serve(file, INSIDE_SECURITY_POLICY, include_body)
}

/// A page's file, under its security `policy`. `no-cache` makes a browser
/// ask again rather than reuse its copy, so a new build is seen at once
/// (and, like every answer, it says `nosniff`: `response.rs`).
fn serve(file: Embedded, policy: &str, include_body: bool) -> Vec<u8> {
    response(
        "200 OK",
        file.content_type,
        &[
            ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", policy),
        ],
        file.body.as_bytes(),
        include_body,
    )
}
