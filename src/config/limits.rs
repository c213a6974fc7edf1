//! Every number the server runs by, with the reason it has the value it
//! has. `Config` (`flags.rs`) carries the ones an operator may change from
//! the command line; the rest are fixed here. The README's table of
//! defaults is checked against these by `tests/readme_defaults.rs`.

use std::time::Duration;

/// Port used when neither `--port` nor `PORT`/`WS_PORT` says otherwise; the
/// tutorial's client connects to `ws://localhost:8081`.
pub const DEFAULT_PORT: u16 = 8081;

/// Largest WebSocket message (and frame) a client may send. Chat lines are
/// short; 64 KiB leaves room for any honest message and stops a client from
/// making the server buffer megabytes. Larger messages close with 1009.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest chat text, in characters, that is relayed to everyone.
pub const DEFAULT_MAX_CHAT_CHARS: usize = 2000;

/// Bytes of JSON a chat may carry besides its `text`: `"type":"chat"` and
/// whatever else a client adds (a colour, the id it replies to), measured
/// as relayed. The tutorial's client adds nothing the server keeps (its
/// `username` is replaced by the server's); 4 KiB leaves room for any small
/// extra a course invents. Without it, a client could send 64 KiB chats
/// under a short `text`, and every room would keep megabytes of them in
/// memory and replay them to each newcomer. With it, a chat is at most
/// about 12 KiB (2,000 characters of text, escaped, and this).
pub const MAX_CHAT_EXTRA_BYTES: usize = 4 * 1024;

/// Longest username, in characters, after trimming.
pub const MAX_USERNAME_CHARS: usize = 32;

/// Longest room name, in characters: it is typed in a URL and shown in a
/// list, and every key of the room in Redis starts with it.
pub const MAX_ROOM_NAME_CHARS: usize = 32;

/// Messages per second a client may send; the burst is twice this. High
/// enough for any person typing, low enough that one script cannot flood a
/// room. `0` turns the limit off (for benchmarks).
pub const DEFAULT_RATE_LIMIT: u32 = 20;

/// How many messages over the rate limit a client may send, in a row of
/// refusals without the bucket refilling in between, before the server stops
/// answering with errors and closes the connection with 1008.
pub const RATE_LIMIT_STRIKES: u32 = 50;

/// Messages that may wait in one client's outbound queue. A client this far
/// behind is not reading; it is disconnected rather than slowing anyone down.
pub const DEFAULT_OUTBOUND_MESSAGES: usize = 4096;

/// Bytes that may wait in one client's outbound queue (the same rule as
/// above, for large frames such as `active_users` lists in a big room).
pub const DEFAULT_OUTBOUND_BYTES: usize = 4 * 1024 * 1024;

/// Time a new connection has to send its complete HTTP request. Protects the
/// server from connections that open and then dribble (slowloris).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client silent for this long is sent a ping, so that a live but quiet
/// client answers with a pong.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// A client silent for this long (no message, no pong) is considered dead.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Time a writer may stay blocked with no byte taken by the client before
/// it gives the connection up as dead. An HTTP answer (a page, a page of
/// history) is written under the same bound, so a client that asks for a
/// large one and never reads frees its thread in as long.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; past this, new ones get HTTP 503. Each
/// connection costs a thread (two while it is behind) and one file
/// descriptor, and this machine
/// allows 20,000 descriptors per process and 32,768 threads in all.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Connections from one client address at once (`--max-connections-per-ip`);
/// past this, new ones from it get HTTP 429. A class behind one school NAT
/// is one address: 256 fits a class of a few hundred with a tab or two each,
/// while one address can no longer take all of `--max-connections` (a
/// script, or slowloris: sockets count from their accept, before any
/// request). `0` turns the limit off.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

/// IPv6 clients are counted by the network of this many bits, not by the
/// whole address: one household, phone or virtual machine is routinely
/// given a /64 (RFC 6177), and picks new addresses in it at will (privacy
/// addresses), so counting whole addresses would bound nothing.
pub const IPV6_CLIENT_PREFIX_BITS: u8 = 64;

/// Time a WebSocket has to log in (`--login-timeout`) before it is closed
/// with 1008 "login timeout": a connection that never logs in only holds
/// a thread and a place under the caps. A minute is ample for a person
/// to type a name or paste a token; `0` turns the deadline off.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Rooms that may exist at once. A room costs a little memory and nothing
/// while quiet, but each is a name someone chose: without a bound, a script
/// opening connections to `/r/a1`, `/r/a2`, … could grow the server's state
/// without limit. Past it, a handshake for a new room gets HTTP 503; with
/// sign-in on, a room opens only at its first verified login, and the login
/// that would open one too many is refused ("too many rooms").
pub const DEFAULT_MAX_ROOMS: usize = 1_000;

/// Chats a newcomer to a room is shown (`--history`); `0` turns history off
/// and the server keeps nothing. Fifty fill a screen or two.
pub const DEFAULT_HISTORY: usize = 50;

/// Most chats sent to a client that reconnects with `since`: enough for a
/// minute's gap in a busy room, and a bound on the size of one message.
pub const DEFAULT_HISTORY_MAX: usize = 1_000;

/// Chats kept per room in the store (`--retain`); older ones are deleted in
/// the background. Ten thousand is days of a class's chat, a few MB.
pub const DEFAULT_RETAIN: usize = 10_000;

/// Chats kept in the whole store, every room together (`--retain-total`).
/// `--retain` bounds one room, but a script that opens rooms `/r/a1`,
/// `/r/a2`, … could still fill the disk one room at a time; past this
/// bound, the rooms that were active least recently lose their oldest chats
/// first. A million chats of a few hundred bytes is a few hundred MB.
pub const DEFAULT_RETAIN_TOTAL: usize = 1_000_000;

/// The history file, in the working directory, so `make run` needs nothing.
pub const DEFAULT_DB: &str = "threadchat.db";

/// Chats each room keeps in memory (at least `--history`), so that a join,
/// and a reconnect after a short gap, costs no query. A few hundred bytes
/// each, per room.
pub const RECENT_PER_ROOM: usize = 256;

/// Bytes of chats each room keeps in memory, whatever their number: two
/// `history` messages' worth (`HISTORY_MESSAGE_BYTES`), so a newcomer's
/// history always comes from memory. 256 chats of a few hundred bytes fit
/// well within it; only big chats make it bind, and then the tail holds
/// fewer and a reconnect asks the store sooner. At `--max-rooms` 1,000 it
/// bounds all the tails together at 128 MiB.
pub const RECENT_BYTES_PER_ROOM: usize = 128 * 1024;

/// Most bytes of one `history` message (its JSON). A newcomer's history is
/// cut to one such message, its oldest chats left out (and `complete`
/// false: the page offers the rest over HTTP); a reconnect's catch-up is
/// sent as several (`"more":true` on all but the last). The size of the
/// largest message a client may send: a client that can send one can take
/// one. A message holds one chat at least, so a chat stored before chats
/// were bounded, larger than this, is still sent, on its own.
pub const HISTORY_MESSAGE_BYTES: usize = 64 * 1024;

/// Most bytes of chats in one reconnect's catch-up, all its `history`
/// messages together, and never more than half of `--outbound-bytes`: the
/// catch-up is queued at once, before the live chat that follows it, and
/// must leave room for that chat while the client reads. One MiB is
/// thousands of ordinary chats; past it the oldest are left out and the
/// last message says `complete: false`.
pub const MAX_CATCH_UP_BYTES: usize = 1024 * 1024;

/// Chats handed to the archivist and not yet committed, past which new chats
/// are refused ("history store is behind") rather than queued without end
/// while the disk is stuck.
pub const MAX_UNARCHIVED: usize = 64 * 1024;

/// Longest a handshake waits for the dispatcher to admit it to its room.
/// The dispatcher answers in microseconds; this only bounds a server so
/// overloaded that the client is better told 503 than kept waiting.
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest an HTTP request waits for the thread that owns its answer (the
/// dispatcher for `/api/rooms`).
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// Time graceful shutdown gives clients to receive their close frame before
/// their sockets are shut down regardless.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// How long shutdown waits, after it has shut down the sockets of the clients
/// still open at the end of `SHUTDOWN_GRACE`, for their connection threads to
/// end: a shut-down socket wakes a blocked read or write at once, so this
/// only covers a thread finishing its exit.
pub const FORCE_CLOSE_WAIT: Duration = Duration::from_millis(400);

/// Exit status of the process when the dispatcher has died: 70, EX_SOFTWARE
/// of `sysexits.h` ("internal software error"), so that a supervisor sees a
/// crash to restart, not a clean stop.
pub const DISPATCHER_DIED: i32 = 70;

/// Connections the kernel may hold waiting for `accept` (capped by the
/// system's `net.core.somaxconn`, 4096 by default).
pub const LISTEN_BACKLOG: i32 = 4096;

/// How long the accept loop pauses after a failed `accept`. Out of file
/// descriptors, mostly: back off briefly rather than spin, and keep serving
/// the connections we have.
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Over-cap connections waiting for their 503; more than this are dropped
/// without an answer.
pub const REJECT_QUEUE: usize = 64;

/// How long the rejecter waits for an over-cap client's request before
/// answering anyway.
pub const REJECT_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// On a TLS port, how long the rejecter gives an over-cap client to finish
/// its TLS handshake before dropping it unanswered: one round trip on a
/// slow link is well under it, and it bounds what one silent client costs
/// the one thread that refuses everyone.
pub const REJECT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Most bytes of an over-cap client's request the rejecter reads, and throws
/// away, before its 503: closing a socket with unread data resets it, and
/// the client might miss the 503. A WebSocket handshake request is usually
/// well under this, so one read takes all of it.
pub const REJECT_READ_BYTES: usize = 2048;

/// Memory mappings one thread costs: its stack, the guard page below it,
/// the signal stack Rust gives every thread for stack-overflow reports, and
/// that one's guard page. A connection has one thread (its reader), and a
/// second (its writer) only while it has a backlog.
pub const MAPPINGS_PER_THREAD: usize = 4;

/// Mappings kept for everything else: the binary, libraries, heap arenas and
/// the server's own threads (a running server with 100 clients has about
/// 150; measured with `wc -l /proc/PID/maps`).
pub const MAPPINGS_RESERVE: usize = 512;

/// The share of the thread budget kept for writer threads when the
/// mappings decide the connection ceiling: connections at most
/// `WRITER_SHARE_DENOMINATOR - 1` sixteenths of the threads the mappings
/// allow, so that one client in fifteen can be behind at once before a
/// backlog finds no writer (and that client is closed rather than the
/// process aborted by a thread start past the limit). With the default
/// `vm.max_map_count` (65,530) that is 15,225 connections.
pub const WRITER_SHARE_DENOMINATOR: usize = 16;

/// How long a writer thread whose client has caught up waits for the next
/// backlog before it ends. At full speed the backlog comes back within
/// milliseconds, and starting a thread for each would cost more than the
/// wake-ups saved; a client that keeps up costs no thread after this.
pub const WRITER_LINGER: Duration = Duration::from_secs(1);

/// Descriptors kept for everything else: the listener, logging, the
/// connections waiting for their 503.
pub const FILES_RESERVE: usize = 128;

/// Longest HTTP request head (request line plus headers) accepted.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;

/// Most headers in one request.
pub const MAX_REQUEST_HEADERS: usize = 32;

/// Bytes read from the socket at a time while a request head arrives: a
/// browser's WebSocket handshake is well under a kilobyte, so one read
/// usually holds a whole head.
pub const REQUEST_READ_BYTES: usize = 1024;

/// How often a handshake blocked on a silent client checks whether the server
/// is shutting down: well within `SHUTDOWN_GRACE`, so clients that never
/// finish a request do not hold up shutdown.
pub const HANDSHAKE_POLL: Duration = Duration::from_millis(250);

/// Chats a page of `/api/rooms/<name>/messages` holds when the request does
/// not say (`limit`): as many as a newcomer is shown by default, a screen
/// or two.
pub const DEFAULT_HISTORY_PAGE: usize = 50;

/// Most a client may still send after its response, and how long it gets to
/// send it, before its socket is closed regardless (`http::linger_close_stream`):
/// room for the rest of a request it was sending (a head is at most
/// `MAX_REQUEST_HEAD_BYTES`), too little for a client to hold the thread.
pub const LINGER_BYTES: usize = 64 * 1024;
pub const LINGER_TIME: Duration = Duration::from_secs(1);

/// Bytes `http::linger_close_stream` reads, and discards, at a time: a page of
/// stack, so a client that sends its last bytes takes few reads.
pub const LINGER_READ_BYTES: usize = 4 * 1024;

/// tungstenite's read buffer per connection. Its default is 128 KiB, which for
/// 10,000 idle connections would be over a gigabyte; tungstenite zero-fills
/// it at the first read, so all of it is resident from then on. A chat frame
/// is a few hundred bytes and fits; a larger message grows the buffer to its
/// size and is read 512 bytes a call (a 2,000-character chat in five reads,
/// at most 20 a second per client). Measured on 2,000 idle connections:
/// 512 bytes instead of 2 KiB took a connection's server memory from 20.1
/// to 18.6 KiB.
pub const READ_BUFFER_BYTES: usize = 512;

/// Stack of a reader thread: it parses JSON (serde_json bounds nesting at 128
/// levels) and runs tungstenite. Only the pages touched count as memory.
pub const READER_STACK_BYTES: usize = 256 * 1024;

/// Silence after which a reader waits for its client near the top of its
/// stack, the pages below given back (`connection/idle.rs`). Each quiet
/// spell costs one wake-up more (the read timing out), a `madvise` and a
/// `poll`, a few microseconds, so at most that once a second per
/// connection; a client talking more often than this never pays it, and one
/// that stops holds its deep stack pages for a second at most.
pub const QUIET_AFTER: Duration = Duration::from_secs(1);

/// Bytes of stack kept below the locals of the function that gives a
/// reader's deeper stack pages back (`connection/stack.rs`): room for the
/// rest of that function's frame (88 bytes in a release build, 168 in a
/// debug one, on x86-64) and the `madvise` call under it, which uses none.
/// Every byte of it counts against a quiet reader's depth, which in a
/// release build ends about 7.7 KiB below the top of its stack: two pages
/// with this, three with a whole page kept.
pub const STACK_KEPT_BELOW: usize = 256;

/// Most connection threads that wait, their connection over, for the next
/// accepted socket (`server/spares.rs`), and how long each waits before it
/// ends. Reusing a thread saves its start and end, a quarter of what a short
/// HTTP request costs the server's CPU; a waiting thread costs the kernel's
/// part of a thread and keeps what its stack touched (as glibc keeps an
/// ended thread's stack anyway: the README's limits), so they are few. 16
/// carry hundreds of short requests a second (each holds its thread under a
/// millisecond); a second carries a steady stream (the live view's two
/// requests a second, a health check's one) from one request to the next,
/// and gives a burst's threads back soon after it, as `WRITER_LINGER` does
/// for writers.
pub const MAX_SPARE_THREADS: usize = 16;
pub const SPARE_WAIT: Duration = Duration::from_secs(1);

/// Stack of a writer thread: it only moves byte buffers to the socket.
pub const WRITER_STACK_BYTES: usize = 64 * 1024;

/// Events from all readers to the dispatcher that may be in flight at once.
/// A full channel makes readers wait, which slows floods at their source.
pub const EVENT_QUEUE_CAPACITY: usize = 16 * 1024;

/// Largest batch of broadcast frames the dispatcher gathers before queueing
/// it for everyone (see `room.rs`). `0` queues every broadcast on its
/// own; the benchmarks use that to show what batching buys.
pub const DEFAULT_BROADCAST_BATCH_BYTES: usize = 64 * 1024;

/// Most events the dispatcher handles in one batch, so that a steady stream
/// of events cannot postpone a flush indefinitely.
pub const MAX_EVENTS_PER_BATCH: usize = 256;

/// Most events in a dispatcher batch whose frames are still written in
/// place (`outbox/turn.rs`). A larger batch means the dispatcher is behind,
/// at full speed or short of CPU on a busy machine, and writing every
/// socket itself one after another would make it later still: its frames
/// then go to the clients' writer threads, which the scheduler runs side
/// by side. Measured on a 2-core machine shared with other work: writing
/// in place throughout, the dispatcher waited 8.7 s of a 10 s steady run
/// for a core, and the full-speed fan-out fell to half.
pub const IN_PLACE_MAX_BATCH_EVENTS: usize = 4;

/// Most queued buffers the writer gathers into one `writev` call. `1` writes
/// each on its own (for the benchmarks' comparison).
pub const DEFAULT_WRITE_BATCH: usize = 512;

/// How long a reader, after its goodbye, waits for its connection's last
/// write beyond the write timeout (which bounds the write itself): the
/// writer thread's start and a poll interval or two.
pub const CLOSE_WAIT_MARGIN: Duration = Duration::from_secs(1);

/// How often a writer blocked on a full socket checks whether its client has
/// been disconnected meanwhile.
pub const WRITE_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Longest reason a close frame carries, in bytes: a control frame's
/// payload is at most 125 bytes (RFC 6455, 5.5), 2 of them the close code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// After the server's close frame, how long the reader waits for the
/// client's own close frame before the socket closes, and how many bytes of
/// other messages it drops meanwhile (`connection::reader`): closed with
/// input unread, the kernel would reset the connection, and a reset can
/// destroy the close frame before the client reads it. Enough for a client
/// busy sending (a flooder's burst) to read the close and answer; little
/// enough that a client that never answers holds its thread no longer than
/// a second, as `LINGER_TIME` and `LINGER_BYTES` do for HTTP.
pub const CLOSE_REPLY_WAIT: Duration = LINGER_TIME;
pub const CLOSE_REPLY_BYTES: usize = LINGER_BYTES;

/// Shortest read timeout a reader sets while it waits for a deadline (a
/// token's end, the login deadline): the OS refuses zero, and a busy loop
/// helps nobody.
pub const MIN_READ_WAKE: Duration = Duration::from_millis(10);

/// Most bytes of an unrecognised message quoted in the log.
pub const LOG_PAYLOAD_CHARS: usize = 200;

/// Chats a client may send before its login is finished (the room's
/// history loading, or the name being claimed in the cluster); they are
/// handled once it is. More than a client's rate limit allows in a second
/// would be a client that is not waiting for anything.
pub const MAX_PARKED_REQUESTS: usize = 64;
