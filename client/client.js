// threadchat browser client.
//
// The page's flow, in the order a user meets it:
//   1. Connect: open one WebSocket to the server URL in #server.
//   2. Set Name: send {"type":"login"}; the server answers every logged-in
//      socket with the new list of users. Setting a name again renames.
//   3. Chat: send {"type":"chat"}; the server relays it to everyone, us
//      included, so a message appears only once the server has accepted it.
// Everything the server sends goes through handleServerMessage, which
// dispatches on the message's "type".
//
// Safety rule for the whole file: text from the network is only ever put on
// the page with textContent, never as HTML, so a name or message such as
// "<img src=x onerror=...>" shows up literally and runs nothing.

'use strict';

const $ = (id) => document.getElementById(id);

const els = {
  status: $('ws-status'),
  nameDisplay: $('name-display'),
  connectForm: $('connect-form'),
  server: $('server'),
  connect: $('connect'),
  serverError: $('server-error'),
  nameForm: $('name-form'),
  name: $('name'),
  setName: $('set-name'),
  nameError: $('name-error'),
  chat: $('chat'),
  messageForm: $('message-form'),
  message: $('message'),
  send: $('send'),
  messageError: $('message-error'),
  users: $('users-list'),
};

// The page's whole state. The server is the authority on names: `me` is set
// only when the server confirms a login, never when we merely ask for one.
let socket = null;
let me = null;          // our name on the current socket, null until confirmed
let requested = null;   // the name we asked for and are waiting to hear back
let rejoinAs = null;    // our name before the connection dropped, to log in again
let activeUsers = [];   // the last list the server sent, in join order

// ---------------------------------------------------------------------------
// Connection

function defaultServerUrl() {
  // Served by threadchat itself: the chat lives on the same host and port.
  // Opened from disk (file:), there is no host, so guess a local server.
  if (location.protocol === 'https:') return `wss://${location.host}/`;
  if (location.protocol === 'http:') return `ws://${location.host}/`;
  return 'ws://localhost:8081';
}

function connect() {
  showError(els.server, els.serverError, '');
  try {
    socket = new WebSocket(els.server.value.trim());
  } catch {
    // The constructor throws at once for a URL it cannot use; an unreachable
    // server is reported later, by the close event.
    showError(els.server, els.serverError, 'Not a usable URL', 'try ws://host:port/');
    els.server.focus();
    return;
  }
  setStatus('connecting');
  socket.addEventListener('open', onOpen);
  socket.addEventListener('message', (event) => handleServerMessage(parseFrame(event.data)));
  socket.addEventListener('close', onClose);
}

function onOpen() {
  setStatus('connected');
  if (rejoinAs) {
    // A reconnect: log in again under the name we had.
    login(rejoinAs);
  } else {
    els.name.focus();
  }
}

function onClose() {
  const wasOpen = els.status.dataset.state === 'connected';
  socket = null;
  rejoinAs = me || rejoinAs;
  me = null;
  requested = null;
  setStatus('disconnected');
  renderUsers([]);
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

function login(name) {
  requested = name.trim();
  send({ type: 'login', username: name });
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
  switch (msg.type) {
    case 'login':
      onLogin(msg);
      break;
    case 'disconnect':
      onDisconnect(msg);
      break;
    case 'chat':
      addChatMessage(msg.username, msg.text);
      break;
    case 'error':
      onError(msg);
      break;
    default:
      console.warn('threadchat: ignoring unknown message', msg);
  }
}

function onLogin(msg) {
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
}

function onDisconnect(msg) {
  addSystemLine(`${msg.user_left} left`);
  renderUsers(msg.active_users);
}

function onError(msg) {
  // Show the refusal next to the input whose request it refuses. Errors with
  // no request (e.g. a frame the server could not parse) go to the message
  // box once logged in, else to the name box.
  if (msg.request === 'login' || (msg.request !== 'chat' && me === null)) {
    requested = null;
    showError(els.name, els.nameError, msg.error, msg.details);
    els.name.focus();
    els.name.select();
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
  els.nameDisplay.textContent = `Signed in as ${name}`;
  els.setName.textContent = 'Change Name';
  showError(els.name, els.nameError, '');
  setEnabled([els.message, els.send], true);
  els.message.focus();
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

// Own messages get class `right`, everyone else's `left`, as in the tutorial.
function addChatMessage(username, text) {
  const item = document.createElement('div');
  item.className = `message ${username === me ? 'right' : 'left'}`;

  const meta = document.createElement('div');
  meta.className = 'meta';
  const sender = document.createElement('span');
  sender.className = 'sender';
  sender.textContent = username;
  meta.append(sender, ' ', timestamp());

  const body = document.createElement('p');
  body.className = 'text';
  body.textContent = text;

  item.append(meta, body);
  appendToChat(item);
}

function addSystemLine(text) {
  const line = document.createElement('p');
  line.className = 'system';
  line.textContent = text;
  appendToChat(line);
}

function timestamp() {
  const now = new Date();
  const time = document.createElement('time');
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return time;
}

function appendToChat(node) {
  els.chat.append(node);
  // Keep the newest line in view.
  els.chat.scrollTop = els.chat.scrollHeight;
}

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

els.messageForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = els.message.value;
  if (text.trim() === '') return;
  showError(els.message, els.messageError, '');
  send({ type: 'chat', text, username: me });
  els.message.value = '';
  els.message.focus();
});

els.server.value = defaultServerUrl();
setStatus('disconnected');
els.server.focus();
