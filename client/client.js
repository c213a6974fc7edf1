// threadchat browser client.
//
// The page's flow, in the order a user meets it:
//   1. Connect: open one WebSocket to the server URL in #server. The page
//      served at /r/<room> fills in that room's URL, the page at / the lobby.
//   2. Set Name (or Sign In, when the server wants a token): send
//      {"type":"login","presence":"changes"}; the server answers this socket
//      alone with the room's recent history, then with the room's whole list
//      of users (a "login" message). After that the page hears who comes and
//      goes as "presence" messages ({"joined":[…],"left":[…]}, or a whole
//      "users" list after a rename) and keeps its list from them, rather than
//      being sent the whole list at every arrival. Setting a name again
//      renames.
//   3. Chat: send {"type":"chat"}; the server relays it to everyone in the
//      room, us included, so a message appears only once the server has
//      accepted it.
// Everything the server sends goes through handleServerMessage, which
// dispatches on the message's "type". The HTTP side (/api/info, /api/rooms,
// older messages) is read with fetch from the same server.
//
// Safety rules for the whole file:
//   - text from the network is only ever put on the page with textContent,
//     never as HTML, so a name or message such as "<img src=x onerror=...>"
//     shows up literally and runs nothing;
//   - a sign-in token never goes into a URL the page requests: it is read
//     from the address bar's #fragment (which browsers do not send), removed
//     from it at once, and only ever sent inside the WebSocket and in the
//     Authorization header of the page's own API requests (apiFetch).

'use strict';

const $ = (id) => document.getElementById(id);

const els = {
  roomTitle: $('room-title'),
  status: $('ws-status'),
  nameDisplay: $('name-display'),
  copyLink: $('copy-link'),
  copyStatus: $('copy-status'),
  copyFallback: $('copy-fallback'),
  copyUrl: $('copy-url'),
  connectForm: $('connect-form'),
  server: $('server'),
  connect: $('connect'),
  serverError: $('server-error'),
  nameForm: $('name-form'),
  name: $('name'),
  setName: $('set-name'),
  nameError: $('name-error'),
  tokenForm: $('token-form'),
  token: $('token'),
  signIn: $('sign-in'),
  tokenError: $('token-error'),
  loadOlder: $('load-older'),
  chat: $('chat'),
  chatSummary: $('chat-summary'),
  messageForm: $('message-form'),
  message: $('message'),
  send: $('send'),
  messageError: $('message-error'),
  users: $('users-list'),
  rooms: $('rooms-list'),
  roomsNote: $('rooms-note'),
  roomForm: $('room-form'),
  roomInput: $('room-input'),
  roomError: $('room-error'),
};

// How often the room list is fetched again while connected.
const ROOMS_REFRESH_MS = 5_000;
// How long "Link copied" stays before the button is quiet again.
const COPY_CONFIRMATION_MS = 4_000;
// Older messages fetched per "Load older" press (the server allows 1..200).
const OLDER_PAGE = 50;
// Until /api/info says otherwise: the protocol's room name rule.
const DEFAULT_ROOM_PATTERN = '^[a-z0-9_-]{1,32}$';
// Where the token waits while the tab moves between rooms (this tab only).
const TOKEN_KEY = 'threadchat-token';

// The page's whole state. The server is the authority on names: `me` is set
// only when the server confirms a login, never when we merely ask for one.
let socket = null;
let me = null;          // our name on the current socket, null until confirmed
let requested = null;   // the name we asked for and are waiting to hear back
let rejoinAs = null;    // our name before the connection dropped, to log in again
let activeUsers = [];   // the last list the server sent, in join order

// What the server is (from GET /api/info); the defaults are a server that
// predates it: no sign-in, no history, the protocol's room names.
let info = { auth: 'none', history: 0, roomPattern: new RegExp(DEFAULT_ROOM_PATTERN) };
let infoReady = Promise.resolve(info);

// Sign-in: the token and the name it carries (for display only; the server
// checks the token, the page just reads its payload).
let token = null;
let tokenSub = null;

// History. Every chat from a history-keeping server has an id, increasing per
// room; the page keeps the ids it shows, so nothing is ever shown twice.
const past = {
  url: null,          // the chat (server and room) the ids below belong to
  seen: new Set(),
  lastId: null,       // newest id shown: a reconnect asks for what came after
  oldestId: null,     // oldest id shown: "Load older" asks for what came before
  olderAnchor: null,  // the divider older messages are inserted after
  gapNote: null,      // "some earlier messages are not shown", while true
  received: false,    // this socket has had its history
  sentSince: null,    // the `since` this socket's login carried, if any
  loadingOlder: false,
};

let roomsTimer = null;
let roomsInFlight = false;
let copyTimer = null;

// ---------------------------------------------------------------------------
// Where we are: the room and server this page is for

// The room a path names, by the server's rule: / is the lobby, /r/<name> is
// <name> in lower case; null for any other path.
function roomFromPath(pathname) {
  if (pathname === '/' || pathname === '/index.html') return 'lobby';
  const match = /^\/r\/([^/]+)$/.exec(pathname);
  if (!match) return null;
  let name;
  try {
    name = decodeURIComponent(match[1]).toLowerCase();
  } catch {
    return null;
  }
  return new RegExp(DEFAULT_ROOM_PATTERN).test(name) ? name : null;
}

// The room of the page itself (null when opened from disk).
function pageRoom() {
  if (location.protocol !== 'http:' && location.protocol !== 'https:') return null;
  return roomFromPath(location.pathname) || 'lobby';
}

function defaultServerUrl() {
  // Served by threadchat itself: the chat lives on the same host and port,
  // at the same path as the page. Opened from disk (file:), there is no
  // host, so guess a local server.
  const room = pageRoom();
  if (room === null) return 'ws://localhost:8081';
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const path = location.pathname === '/' || location.pathname === '/index.html' ? '/' : `/r/${room}`;
  return `${scheme}//${location.host}${path}`;
}

// The server's HTTP origin, from the WebSocket URL in the Server field
// (ws://host:port/r/x -> http://host:port), or null if it is not one.
function serverOrigin() {
  try {
    const url = new URL(els.server.value.trim());
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') return null;
    return `${url.protocol === 'wss:' ? 'https:' : 'http:'}//${url.host}`;
  } catch {
    return null;
  }
}

// The page reads the server's HTTP API only when the chat server is the one
// that served it: the Content-Security-Policy allows nothing else, and from
// disk a request would only fail.
function apiOrigin() {
  const origin = serverOrigin();
  return origin !== null && origin === location.origin ? origin : null;
}

// With sign-in on, the server shows its rooms and their history only to
// signed-in readers: the page asks once the chat has accepted its token
// (a request the server would refuse only puts an error in the console).
function apiReadable() {
  return info.auth !== 'jwt' || (token !== null && me !== null);
}

// GET on the server's API, with the token in an Authorization header when
// signing in (never in the URL, which ends up in logs).
function apiFetch(url) {
  const headers = info.auth === 'jwt' && token ? { Authorization: `Bearer ${token}` } : {};
  return fetch(url, { cache: 'no-store', headers });
}

// The room the Server field points at (falls back to the page's room).
function serverRoom() {
  try {
    return roomFromPath(new URL(els.server.value.trim()).pathname) || pageRoom() || 'lobby';
  } catch {
    return pageRoom() || 'lobby';
  }
}

function roomUrl(room) {
  const origin = apiOrigin() || serverOrigin() || location.origin;
  return `${origin}/r/${encodeURIComponent(room)}`;
}

function showRoom(room) {
  els.roomTitle.textContent = room;
  document.title = `${room} · threadchat`;
  markCurrentRoom();
}

function currentRoom() {
  return els.roomTitle.textContent;
}

// Asks the server what it is. Failing is fine: the defaults describe a
// server without sign-in or history.
async function loadInfo() {
  const origin = apiOrigin();
  if (origin === null) return info;
  try {
    const response = await fetch(`${origin}/api/info`, { cache: 'no-store' });
    if (!response.ok) return info;
    const body = await response.json();
    let roomPattern = info.roomPattern;
    try {
      if (typeof body.room_name_pattern === 'string') roomPattern = new RegExp(body.room_name_pattern);
    } catch {
      // keep the protocol's rule
    }
    info = {
      auth: body.auth === 'jwt' ? 'jwt' : 'none',
      history: Number.isInteger(body.history) ? body.history : 0,
      roomPattern,
      // Seconds an author may edit or delete a chat (servers with moderation).
      editWindow: Number.isInteger(body.edit_window) ? body.edit_window : null,
    };
  } catch {
    // unreachable or not JSON: keep the defaults
  }
  applyAuthMode();
  return info;
}

// ---------------------------------------------------------------------------
// Sign-in tokens

// Takes a token from the address bar's #token=..., then removes it from
// there (and from the tab's history) so it is not bookmarked, shared or
// shown over someone's shoulder. A token from an earlier room of this tab
// is kept in sessionStorage.
function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    fragment.delete('token');
    const rest = fragment.toString();
    replaceAddress(location.pathname + location.search + (rest ? `#${rest}` : ''));
    remember(fromUrl.trim());
    return;
  }
  try {
    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (stored) setToken(stored);
  } catch {
    // storage disabled: the field still works
  }
}

function replaceAddress(url) {
  window.history.replaceState(window.history.state, '', url);
}

function remember(value) {
  setToken(value);
  try {
    sessionStorage.setItem(TOKEN_KEY, value);
  } catch {
    // storage disabled: the token lasts as long as the page
  }
}

function setToken(value) {
  token = value;
  tokenSub = tokenSubject(value);
  els.token.value = value;
  if (me === null) showIdentity();
}

// The `sub` claim of a JWT, read without checking anything: only to show
// whom the token is for before the server has said so. null if unreadable.
function tokenSubject(jwt) {
  const parts = jwt.split('.');
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : null;
  } catch {
    return null;
  }
}

// Shows the name step or the token step, as the server wants.
function applyAuthMode() {
  const jwt = info.auth === 'jwt';
  els.nameForm.hidden = jwt;
  els.tokenForm.hidden = !jwt;
  if (jwt && document.activeElement === els.name) els.token.focus();
  showIdentity();
}

function showIdentity() {
  if (me !== null) {
    els.nameDisplay.textContent = `Signed in as ${me}`;
  } else if (info.auth === 'jwt' && tokenSub !== null) {
    els.nameDisplay.textContent = `Will sign in as ${tokenSub}`;
  } else {
    els.nameDisplay.textContent = 'Not signed in';
  }
}

// ---------------------------------------------------------------------------
// Connection

function connect() {
  showError(els.server, els.serverError, '');
  const url = els.server.value.trim();
  try {
    socket = new WebSocket(url);
  } catch {
    // The constructor throws at once for a URL it cannot use; an unreachable
    // server is reported later, by the close event.
    showError(els.server, els.serverError, 'Not a usable URL', 'try ws://host:port/');
    els.server.focus();
    return;
  }
  // A different server or room: the ids seen so far mean nothing there.
  if (past.url !== url) resetHistory(url);
  past.received = false;
  past.sentSince = null;
  showRoom(serverRoom());
  setStatus('connecting');
  socket.addEventListener('open', onOpen);
  socket.addEventListener('message', (event) => handleServerMessage(parseFrame(event.data)));
  socket.addEventListener('close', onClose);
}

async function onOpen() {
  setStatus('connected');
  startRoomsRefresh();
  await infoReady;
  if (info.auth === 'jwt') {
    if (token) {
      signIn();
    } else {
      els.token.focus();
    }
  } else if (rejoinAs) {
    // A reconnect: log in again under the name we had.
    login(rejoinAs);
  } else {
    els.name.focus();
  }
}

function onClose(event) {
  const wasOpen = els.status.dataset.state === 'connected';
  socket = null;
  rejoinAs = me || rejoinAs;
  me = null;
  requested = null;
  stopRoomsRefresh();
  setStatus('disconnected');
  renderUsers([]);
  showIdentity();
  if (!tell('close', { code: event.code, reason: event.reason })) return;   // kicked, banned
  if (event.code === 1008 && /expired/i.test(event.reason)) {
    // The server ends a session whose token ran out: a fresh one is needed.
    els.connect.textContent = 'Reconnect';
    addSystemLine('Your sign-in expired.');
    showError(els.token, els.tokenError, 'Token expired', 'paste a fresh token and sign in again');
    els.token.focus();
    return;
  }
  if (wasOpen) {
    // Offer the way back in: the Connect button becomes Reconnect.
    els.connect.textContent = 'Reconnect';
    addSystemLine('Connection lost.');
    showError(els.server, els.serverError, 'Connection lost', 'press Reconnect to join again');
  } else {
    showError(els.server, els.serverError, 'Could not reach the server',
      'check the URL and try again');
  }
  els.connect.focus();
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
  }
}

// A login carries `since` until this socket has had its history, so that a
// reconnect gets only what it missed.
function withSince(message) {
  if (!past.received && past.lastId !== null) {
    message.since = past.lastId;
    past.sentSince = past.lastId;
  }
  return message;
}

function login(name) {
  requested = name.trim();
  send(withSince({ type: 'login', username: name, presence: 'changes' }));
}

function signIn() {
  if (!token) {
    showError(els.token, els.tokenError, 'No token', 'paste the token you were given');
    els.token.focus();
    return;
  }
  showError(els.token, els.tokenError, '');
  if (me === null) {
    requested = tokenSub || '';
  }
  // Logged in already, the same login renews the session; the server sends
  // no new presence for it.
  send(withSince({ type: 'login', token, presence: 'changes' }));
}

// Closing the tab says goodbye, as in the tutorial. The server would notice
// the closed socket anyway; the message makes the intent explicit.
// `pagehide` fires on mobile too, where `beforeunload` often does not.
window.addEventListener('pagehide', () => {
  if (me) send({ type: 'disconnect', username: me });
  if (socket) socket.close();
});

// ---------------------------------------------------------------------------
// Messages from the server

function parseFrame(data) {
  try {
    return JSON.parse(data);
  } catch {
    return { type: 'unparsable' };
  }
}

function handleServerMessage(msg) {
  if (!tell('message', msg)) return;   // handled by another script (moderation.js)
  switch (msg.type) {
    case 'login':
      onLogin(msg);
      break;
    case 'disconnect':
      onDisconnect(msg);
      break;
    case 'presence':
      onPresence(msg);
      break;
    case 'chat':
      onChat(msg);
      break;
    case 'history':
      onHistory(msg);
      break;
    case 'error':
      onError(msg);
      break;
    default:
      console.warn('threadchat: ignoring unknown message', msg);
  }
}

function onLogin(msg) {
  if (typeof msg.room === 'string' && msg.room !== '') showRoom(msg.room);
  const previous = activeUsers;
  // A socket that is not logged in receives no broadcasts, so the first login
  // it hears about is its own. Once logged in, a login is ours when it carries
  // the name we asked for and our old name has left the list (a rename) or is
  // that very name (setting the same name again).
  const isMine = requested !== null && (me === null ||
    (msg.user_joined === requested &&
      (msg.user_joined === me || !msg.active_users.includes(me))));
  if (isMine) {
    becomeUser(msg.user_joined);
  }

  // A rename swaps one name in the list; a join adds one.
  const gone = previous.filter((name) => !msg.active_users.includes(name));
  if (gone.length === 1 && previous.length === msg.active_users.length) {
    addSystemLine(`${gone[0]} is now ${msg.user_joined}`);
  } else if (!previous.includes(msg.user_joined)) {
    addSystemLine(`${msg.user_joined} joined`);
  }
  renderUsers(msg.active_users);
  if (isMine) refreshRooms();
}

function onDisconnect(msg) {
  addSystemLine(`${msg.user_left} left`);
  renderUsers(msg.active_users);
}

// Who came and went since the last presence message: remove `left`, then
// append `joined` (the server's list, in join order); a whole `users` list
// (after a rename, which keeps its place) replaces ours.
function onPresence(msg) {
  if (!Array.isArray(msg.users) && !(Array.isArray(msg.joined) && Array.isArray(msg.left))) {
    return;
  }
  const previous = activeUsers;
  let next;
  if (Array.isArray(msg.users)) {
    next = msg.users;
    const gone = previous.filter((name) => !next.includes(name));
    const added = next.filter((name) => !previous.includes(name));
    if (gone.length === 1 && added.length === 1) {
      addSystemLine(`${gone[0]} is now ${added[0]}`);
    } else {
      for (const name of gone) addSystemLine(`${name} left`);
      for (const name of added) addSystemLine(`${name} joined`);
    }
  } else {
    const left = new Set(msg.left);
    next = previous.filter((name) => !left.has(name)).concat(msg.joined);
    for (const name of msg.left) addSystemLine(`${name} left`);
    for (const name of msg.joined) addSystemLine(`${name} joined`);
  }
  renderUsers(next);
}

function onChat(msg) {
  if (!noteId(msg.id)) return;   // shown already (a reconnect's overlap)
  appendToChat(chatItem(msg));
}

function onError(msg) {
  // Show the refusal next to the input whose request it refuses. Errors with
  // no request (e.g. a frame the server could not parse) go to the message
  // box once logged in, else to the name (or token) box.
  if (msg.request === 'login' || (msg.request !== 'chat' && me === null)) {
    requested = null;
    if (info.auth === 'jwt' || msg.error === 'authentication failed') {
      showError(els.token, els.tokenError, msg.error, msg.details);
      els.token.focus();
      els.token.select();
    } else {
      showError(els.name, els.nameError, msg.error, msg.details);
      els.name.focus();
      els.name.select();
    }
  } else {
    showError(els.message, els.messageError, msg.error, msg.details);
    els.message.focus();
  }
}

function becomeUser(name) {
  me = name;
  requested = null;
  rejoinAs = null;
  els.name.value = name;
  showIdentity();
  els.setName.textContent = 'Change Name';
  els.signIn.textContent = 'Renew';
  showError(els.name, els.nameError, '');
  showError(els.token, els.tokenError, '');
  setEnabled([els.message, els.send], true);
  els.message.focus();
}

// ---------------------------------------------------------------------------
// History: earlier messages, the gap after a reconnect, older pages

function resetHistory(url) {
  past.url = url;
  past.seen = new Set();
  past.lastId = null;
  past.oldestId = null;
  past.olderAnchor = null;
  if (past.gapNote) past.gapNote.remove();
  past.gapNote = null;
  els.loadOlder.hidden = true;
}

// Notes a chat's id; false if it was shown already. Chats without an id (a
// server with history off) are always new.
function noteId(id) {
  if (!Number.isSafeInteger(id)) return true;
  if (past.seen.has(id)) return false;
  past.seen.add(id);
  if (past.lastId === null || id > past.lastId) past.lastId = id;
  if (past.oldestId === null || id < past.oldestId) past.oldestId = id;
  return true;
}

function onHistory(msg) {
  const messages = (Array.isArray(msg.messages) ? msg.messages : [])
    .filter((m) => m && m.type === 'chat');
  const since = past.sentSince;
  past.received = true;
  let startedOver = false;

  if (since !== null) {
    // A reconnect. The answer is a sequel when it starts after our last id;
    // otherwise the server does not know that id (its store was reset, say)
    // and sent its recent history instead: the ids seen so far mean nothing
    // now, and the page starts over from what the server has.
    const sequel = messages.length > 0 ? messages[0].id > since : msg.complete !== false;
    if (sequel) {
      // What was said while we were away, after the "Connection lost." line.
      if (msg.complete === false) {
        addSystemLine('Some messages sent while you were away are not shown.');
      }
      const fresh = messages.filter((m) => noteId(m.id));
      const block = quietBlock();
      for (const m of fresh) block.append(chatItem(m));
      if (fresh.length) appendToChat(block);
      summarize(fresh.length, 'missed while you were away');
      return;
    }
    resetHistory(past.url);
    addSystemLine('The server no longer has the messages above.');
    startedOver = true;
  }

  // First visit: the room's recent past above what is said from now on.
  const fresh = messages.filter((m) => noteId(m.id));
  if (fresh.length === 0) return;
  const block = quietBlock();
  const divider = document.createElement('p');
  divider.className = 'divider';
  divider.textContent = 'Earlier messages';
  block.append(divider);
  for (const m of fresh) block.append(chatItem(m));
  past.olderAnchor = divider;
  // `complete` on a plain join: the room has nothing older than this. In an
  // answer that starts over it says "not a sequel" instead; older messages
  // exist then unless this begins at the room's first id.
  const mayHaveOlder = startedOver ? fresh[0].id > 1 : msg.complete === false;
  if (mayHaveOlder) {
    past.gapNote = systemLine('Some earlier messages are not shown.');
    past.gapNote.classList.add('gap-note');
    block.prepend(past.gapNote);
  }
  els.loadOlder.hidden = !mayHaveOlder || apiOrigin() === null;
  appendToChat(block);
  summarize(fresh.length, 'earlier');
}

// A group of messages that arrived together: screen readers hear one summary
// (see summarize) rather than each message read out in turn.
function quietBlock() {
  const block = document.createElement('div');
  block.className = 'batch';
  block.setAttribute('aria-live', 'off');
  return block;
}

function summarize(count, what) {
  if (count === 0) return;
  els.chatSummary.textContent = `${count} ${what} ${count === 1 ? 'message' : 'messages'}`;
}

async function loadOlder() {
  const origin = apiOrigin();
  if (origin === null || past.oldestId === null || past.loadingOlder) return;
  past.loadingOlder = true;
  els.loadOlder.setAttribute('aria-disabled', 'true');
  const room = currentRoom();
  const url = `${origin}/api/rooms/${encodeURIComponent(room)}/messages` +
    `?before=${past.oldestId}&limit=${OLDER_PAGE}`;
  try {
    const response = await apiFetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const fresh = messages.filter((m) => m && m.type === 'chat' && noteId(m.id));
    prependOlder(fresh);
    if (messages.length < OLDER_PAGE) {
      // The start of the room: nothing is missing any more.
      els.loadOlder.hidden = true;
      if (past.gapNote) past.gapNote.remove();
      past.gapNote = null;
      const start = systemLine('This is the start of the room.');
      past.olderAnchor.before(start);
      els.chat.focus();
    }
    summarize(fresh.length, 'older');
  } catch {
    els.chatSummary.textContent = 'Older messages could not be loaded.';
  } finally {
    past.loadingOlder = false;
    els.loadOlder.removeAttribute('aria-disabled');
  }
}

// Puts older chats right below the divider, keeping what the reader was
// looking at in the same place on screen.
function prependOlder(messages) {
  if (messages.length === 0 || past.olderAnchor === null) return;
  const block = quietBlock();
  for (const m of messages) block.append(chatItem(m));
  const fromBottom = els.chat.scrollHeight - els.chat.scrollTop;
  past.olderAnchor.after(block);
  els.chat.scrollTop = els.chat.scrollHeight - fromBottom;
}

// ---------------------------------------------------------------------------
// Rooms: the list, going to one, sharing the link

function startRoomsRefresh() {
  stopRoomsRefresh();
  refreshRooms();
  roomsTimer = setInterval(() => {
    if (document.visibilityState === 'visible') refreshRooms();
  }, ROOMS_REFRESH_MS);
}

function stopRoomsRefresh() {
  if (roomsTimer !== null) clearInterval(roomsTimer);
  roomsTimer = null;
}

async function refreshRooms() {
  const origin = apiOrigin();
  if (origin === null) {
    els.roomsNote.textContent = 'The room list shows when this page comes from the chat server.';
    return;
  }
  await infoReady;
  if (!apiReadable()) {
    els.roomsNote.textContent = 'Sign in to see the rooms.';
    return;
  }
  if (roomsInFlight) return;
  roomsInFlight = true;
  try {
    const response = await apiFetch(`${origin}/api/rooms`);
    if (response.status === 401) {
      els.roomsNote.textContent = 'Sign in to see the rooms.';
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    renderRooms(Array.isArray(body.rooms) ? body.rooms : []);
  } catch {
    els.roomsNote.textContent = 'The room list is unavailable right now.';
  } finally {
    roomsInFlight = false;
  }
}

// Updates the list in place, so a keyboard user's focus on a link survives
// the refresh.
function renderRooms(rooms) {
  const valid = rooms.filter((r) => r && typeof r.name === 'string');
  const existing = new Map();
  for (const li of els.rooms.children) existing.set(li.dataset.name, li);
  const names = valid.map((r) => r.name);
  for (const [name, li] of existing) {
    if (!names.includes(name)) li.remove();
  }
  valid.forEach((room, index) => {
    const li = existing.get(room.name) || roomItem(room.name);
    const users = Number.isInteger(room.users) ? room.users : 0;
    li.querySelector('.room-users').textContent = `${users} ${users === 1 ? 'user' : 'users'}`;
    if (els.rooms.children[index] !== li) {
      els.rooms.insertBefore(li, els.rooms.children[index] || null);
    }
  });
  markCurrentRoom();
  els.roomsNote.textContent = valid.length === 0 ? 'No one is chatting yet.' : '';
}

function roomItem(name) {
  const li = document.createElement('li');
  li.dataset.name = name;
  const link = document.createElement('a');
  link.className = 'room-link';
  link.href = roomUrl(name);
  link.textContent = name;
  const users = document.createElement('span');
  users.className = 'room-users';
  li.append(link, ' ', users);
  return li;
}

function markCurrentRoom() {
  const room = els.roomTitle.textContent;
  for (const li of els.rooms.children) {
    const link = li.querySelector('a');
    if (li.dataset.name === room) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
}

function goToRoom(raw) {
  const name = raw.trim().toLowerCase();
  if (name === '') {
    showError(els.roomInput, els.roomError, 'Type a room name');
    els.roomInput.focus();
    return;
  }
  if (!info.roomPattern.test(name)) {
    showError(els.roomInput, els.roomError, 'Not a room name',
      'use 1 to 32 of a–z, 0–9, - and _');
    els.roomInput.focus();
    els.roomInput.select();
    return;
  }
  showError(els.roomInput, els.roomError, '');
  location.assign(roomUrl(name));
}

async function copyLink() {
  const link = roomUrl(currentRoom());
  clearTimeout(copyTimer);
  try {
    if (!navigator.clipboard || !navigator.clipboard.writeText) throw new Error('no clipboard');
    await navigator.clipboard.writeText(link);
    els.copyFallback.hidden = true;
    els.copyStatus.textContent = 'Link copied';
    copyTimer = setTimeout(() => { els.copyStatus.textContent = ''; }, COPY_CONFIRMATION_MS);
  } catch {
    // No clipboard (an insecure origin, a refused permission): show the
    // link selected, ready for the reader's own copy.
    els.copyUrl.value = link;
    els.copyFallback.hidden = false;
    els.copyStatus.textContent = 'Copy the link below';
    els.copyUrl.focus();
    els.copyUrl.select();
  }
}

// ---------------------------------------------------------------------------
// Rendering

function setStatus(state) {
  const labels = { connecting: 'Connecting…', connected: 'Connected', disconnected: 'Disconnected' };
  els.status.dataset.state = state;
  els.status.textContent = labels[state];
  els.status.className = `status status-${state}`;

  const connected = state === 'connected';
  setEnabled([els.server, els.connect], state === 'disconnected');
  setEnabled([els.name, els.setName], connected);
  // A token can be given before connecting (Sign In then connects), and
  // after a session expired, when a fresh one is the way back in.
  setEnabled([els.token, els.signIn], state !== 'connecting');
  setEnabled([els.message, els.send], connected && me !== null);
}

function setEnabled(elements, enabled) {
  for (const el of elements) el.disabled = !enabled;
}

// Shows (or, with an empty text, clears) the error under one input, as a
// short headline and optional details, and marks the input invalid so screen
// readers tie the two together through its aria-describedby.
function showError(input, errorEl, text, details) {
  errorEl.replaceChildren();
  if (text) {
    const headline = document.createElement('strong');
    headline.textContent = text.charAt(0).toUpperCase() + text.slice(1);
    errorEl.append(headline);
    if (details) errorEl.append(`: ${details}`);
    input.setAttribute('aria-invalid', 'true');
  } else {
    input.removeAttribute('aria-invalid');
  }
}

// Updates the list in place rather than rebuilding it, so the live region
// announces only the names that arrived or left, not the whole list again.
function renderUsers(names) {
  activeUsers = names;
  const existing = new Map();
  for (const li of els.users.children) existing.set(li.dataset.name, li);

  for (const [name, li] of existing) {
    if (!names.includes(name)) li.remove();
  }
  names.forEach((name, index) => {
    const li = existing.get(name) || userItem(name);
    markSelf(li, name === me);
    if (els.users.children[index] !== li) {
      els.users.insertBefore(li, els.users.children[index] || null);
    }
  });
}

function userItem(name) {
  const li = document.createElement('li');
  li.dataset.name = name;
  const label = document.createElement('span');
  label.className = 'user-name';
  label.textContent = name;
  li.append(label);
  return li;
}

function markSelf(li, isSelf) {
  li.classList.toggle('self', isSelf);
  const marker = li.querySelector('.you');
  if (isSelf && !marker) {
    const you = document.createElement('span');
    you.className = 'you';
    you.textContent = 'you';
    li.append(' ', you);
  } else if (!isSelf && marker) {
    marker.previousSibling.remove();  // the space before it
    marker.remove();
  }
}

// One chat message. Own messages get class `right`, everyone else's `left`,
// as in the tutorial. The time is the server's (`ts`) when it sent one.
function chatItem(msg) {
  const item = document.createElement('div');
  item.className = `message ${msg.username === me ? 'right' : 'left'}`;
  if (Number.isSafeInteger(msg.id)) item.dataset.id = String(msg.id);
  if (Number.isSafeInteger(msg.edited_ts)) item.dataset.edited = String(msg.edited_ts);

  const meta = document.createElement('div');
  meta.className = 'meta';
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.textContent = String(msg.username);
  meta.append(sender, ' ', timestamp(msg.ts));

  const body = document.createElement('p');
  body.className = 'text';
  body.textContent = String(msg.text);

  item.append(meta, body);
  return item;
}

function systemLine(text) {
  const line = document.createElement('p');
  line.className = 'system';
  line.textContent = text;
  return line;
}

function addSystemLine(text) {
  appendToChat(systemLine(text));
}

// A <time> in the reader's own time zone: the hour for today, the date too
// for anything older.
function timestamp(ts) {
  const when = Number.isFinite(ts) ? new Date(ts) : new Date();
  const time = document.createElement('time');
  time.dateTime = when.toISOString();
  const today = when.toDateString() === new Date().toDateString();
  time.textContent = today
    ? when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : when.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  time.title = when.toLocaleString();
  return time;
}

function appendToChat(node) {
  els.chat.append(node);
  // Keep the newest line in view.
  els.chat.scrollTop = els.chat.scrollHeight;
}

// ---------------------------------------------------------------------------
// For the page's other scripts (moderation.js). Each server message and the
// socket's end are first told as a cancelable DOM event (`threadchat:message`,
// `threadchat:close`); a listener that handles one itself cancels it
// (preventDefault) and this file leaves it alone. `tell` is false then.

function tell(what, detail) {
  return document.dispatchEvent(new CustomEvent(`threadchat:${what}`, { detail, cancelable: true }));
}

window.threadchat = Object.freeze({
  send: (message) => send(message),
  me: () => me,
  // The sign-in token, on a server that signs in with tokens.
  token: () => (info.auth === 'jwt' ? token : null),
  // `--edit-window` in seconds, as /api/info says; null if it did not.
  editWindow: () => (info.editWindow === undefined ? null : info.editWindow),
});

// ---------------------------------------------------------------------------
// Wiring. Each step is a <form>, so Enter in any input submits its step.

els.connectForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!socket) connect();
});

els.nameForm.addEventListener('submit', (event) => {
  event.preventDefault();
  showError(els.name, els.nameError, '');
  login(els.name.value);
});

els.tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = els.token.value.trim();
  if (value !== '') remember(value);
  if (socket) {
    signIn();
  } else if (token) {
    connect();   // signs in once open
  } else {
    signIn();    // says a token is needed
  }
});

els.messageForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = els.message.value;
  if (text.trim() === '') return;
  showError(els.message, els.messageError, '');
  send({ type: 'chat', text, username: me });
  els.message.value = '';
  els.message.focus();
});

els.roomForm.addEventListener('submit', (event) => {
  event.preventDefault();
  goToRoom(els.roomInput.value);
});

els.loadOlder.addEventListener('click', loadOlder);
els.copyLink.addEventListener('click', copyLink);

els.server.value = defaultServerUrl();
showRoom(serverRoom());
takeToken();
infoReady = loadInfo();
refreshRooms();
setStatus('disconnected');
els.server.focus();
