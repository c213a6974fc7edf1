// threadchat page: the moderation controls.
//
// Loaded after client.js (both `defer`, so in that order) and kept apart
// from it: the chat works without this file, which only adds to the page.
// It hears what client.js hears through the two events client.js fires
// first, `threadchat:message` (each server message) and `threadchat:close`
// (the socket's end); a message it handles itself it cancels, and client.js
// leaves that one alone. It sends through window.threadchat.send.
//
// Who sees what:
//   - a moderator (whose token's `role` claim is "moderator") sees Delete on
//     every message; Mute (or Unmute), Kick and Ban on everyone else in the
//     list; the lecture-mode switch and a form to lift a ban;
//   - an author sees Edit and Delete on their own messages during the edit
//     window (`edit_window` in /api/info; 15 minutes if it is not said);
//   - everyone sees what was done: "message deleted" in place of a deleted
//     message, "edited" on an edited one, a line in the chat for each mute,
//     kick, ban and change of mode, and why the server refused a command.
// The role is read from the token only to choose which buttons to show. The
// server checks every command against the token itself, so a button shown
// to the wrong person grants nothing; this page decides nothing.
//
// The buttons are added to the messages and users that client.js draws, by
// watching the chat and the user list (MutationObserver), so client.js
// knows nothing of them. Every action that changes something for someone
// else asks first, in one <dialog>. Text from the network goes on the page
// only with textContent.

'use strict';

(() => {
  // The server's default --edit-window, for a server whose /api/info does
  // not say its own (the page's own window is the one it says).
  const DEFAULT_EDIT_WINDOW_S = 900;
  // How often controls past the edit window, and mutes that ran out, go.
  const RECHECK_MS = 15_000;
  // The close codes of moderation (src/protocol/refusal.rs).
  const CLOSE_KICKED = 4001;
  const CLOSE_BANNED = 4003;
  // The requests an error may name that are this file's.
  const COMMANDS = new Set(['delete', 'edit', 'mute', 'unmute', 'kick', 'ban', 'unban', 'room_mode']);
  const MUTE_CHOICES = [[300, '5 minutes'], [600, '10 minutes'], [1800, '30 minutes'],
    [3600, '1 hour'], [86_400, '1 day']];
  const BAN_CHOICES = [[3600, '1 hour'], [86_400, '1 day'], [604_800, '1 week'],
    [2_592_000, '30 days'], [15_552_000, '180 days']];

  const $ = (id) => document.getElementById(id);
  const page = window.threadchat;
  const els = {
    chat: $('chat'),
    users: $('users-list'),
    mode: $('room-mode'),
    tools: $('mod-tools'),
    lecture: $('lecture-switch'),
    unbanForm: $('unban-form'),
    unbanName: $('unban-name'),
    status: $('mod-status'),
    server: $('server'),
    serverError: $('server-error'),
    connect: $('connect'),
    dialog: $('mod-dialog'),
    form: $('mod-form'),
    title: $('mod-title'),
    description: $('mod-description'),
    quote: $('mod-quote'),
    textField: $('mod-text-field'),
    text: $('mod-text'),
    durationField: $('mod-duration-field'),
    duration: $('mod-duration'),
    reasonField: $('mod-reason-field'),
    reason: $('mod-reason'),
    error: $('mod-error'),
    confirm: $('mod-confirm'),
    cancel: $('mod-cancel'),
  };
  if (!page || !els.dialog) return;   // an older page: nothing to add to

  const state = {
    mode: 'open',
    mutes: new Map(),   // username key -> until (ms since the epoch)
    action: null,       // what the open dialog will do once confirmed
    returnTo: null,     // the button that opened it
    removed: false,     // the room heard our kick or ban before our socket closed
  };

  // -------------------------------------------------------------------------
  // Who we are

  let claimsOf = { token: null, claims: {} };

  // The token's claims, read without checking anything (see the header).
  function claims() {
    const token = page.token();
    if (token === claimsOf.token) return claimsOf.claims;
    let value = {};
    try {
      const base64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
      const parsed = JSON.parse(new TextDecoder().decode(bytes));
      if (parsed && typeof parsed === 'object') value = parsed;
    } catch {
      // no token, or not a JWT: no claims
    }
    claimsOf = { token, claims: value };
    return value;
  }

  // Moderation needs sign-in: without a token, no one is shown any control.
  const signedIn = () => page.token() !== null && page.me() !== null;
  const isModerator = () => signedIn() && claims().role === 'moderator';
  const key = (name) => String(name).toLowerCase();
  // 0 (editing off) hides Edit, and an author's own Delete.
  const editWindowMs = () => {
    const seconds = page.editWindow();
    return (seconds === null ? DEFAULT_EDIT_WINDOW_S : seconds) * 1000;
  };
  const isMe = (name) => page.me() !== null && key(name) === key(page.me());

  // -------------------------------------------------------------------------
  // Controls on messages and users

  function refreshAll() {
    for (const item of els.chat.querySelectorAll('.message')) decorateMessage(item);
    for (const li of els.users.children) decorateUser(li);
    els.tools.hidden = !isModerator();
    els.lecture.checked = state.mode === 'lecture';
  }

  function sentAt(item) {
    const time = item.querySelector('time');
    return time ? Date.parse(time.dateTime) : NaN;
  }

  // One message's controls, as who we are allows now. Idempotent: the
  // buttons are replaced only when the set allowed changed.
  function decorateMessage(item) {
    if (item.dataset.edited && !item.classList.contains('deleted') &&
        !item.querySelector('.edited')) {
      const mark = document.createElement('span');
      mark.className = 'edited';
      mark.textContent = 'edited';
      item.querySelector('.meta').append(' ', mark);
    }
    const sender = item.querySelector('.sender');
    const mine = sender !== null && isMe(sender.textContent) && signedIn();
    const recent = Date.now() - sentAt(item) < editWindowMs();
    const live = item.dataset.id !== undefined && !item.classList.contains('deleted');
    const canEdit = live && mine && recent;
    const canDelete = live && (isModerator() || (mine && recent));
    const wanted = [canEdit ? 'edit' : '', canDelete ? 'delete' : ''].join(' ').trim();
    let box = item.querySelector('.mod-actions');
    if ((box ? box.dataset.actions : '') === wanted) return;
    if (box) box.remove();
    if (wanted === '') return;
    box = document.createElement('div');
    box.className = 'mod-actions';
    box.dataset.actions = wanted;
    const whose = mine ? 'your message' : `message by ${sender ? sender.textContent : 'someone'}`;
    if (canEdit) box.append(actionButton('Edit', whose, () => askEdit(item)));
    if (canDelete) box.append(actionButton('Delete', whose, () => askDelete(item)));
    item.append(box);
  }

  // A user's controls: a moderator's, on everyone but themselves.
  function decorateUser(li) {
    const name = li.dataset.name;
    if (name === undefined) return;
    const muted = isMuted(name);
    li.classList.toggle('muted', muted);
    let badge = li.querySelector('.muted-badge');
    if (muted && !badge) {
      badge = document.createElement('span');
      badge.className = 'muted-badge';
      badge.textContent = 'muted';
      const label = li.querySelector('.user-name');
      if (label) label.after(' ', badge); else li.append(' ', badge);
    } else if (!muted && badge) {
      badge.previousSibling.remove();   // the space before it
      badge.remove();
    }
    const wanted = isModerator() && !isMe(name) ? (muted ? 'unmute' : 'mute') : '';
    let box = li.querySelector('.mod-actions');
    if ((box ? box.dataset.actions : '') === wanted) return;
    if (box) box.remove();
    if (wanted === '') return;
    box = document.createElement('span');
    box.className = 'mod-actions';
    box.dataset.actions = wanted;
    box.append(
      muted
        ? actionButton('Unmute', name, () => command({ type: 'unmute', username: name }))
        : actionButton('Mute', name, (b) => askMute(name, b)),
      actionButton('Kick', name, (b) => askKick(name, b)),
      actionButton('Ban', name, (b) => askBan(name, b)),
    );
    li.append(box);
  }

  // A small button: `label` shown, `context` said to screen readers too
  // ("Delete message by maria"), as a list of buttons reads out of context.
  function actionButton(label, context, onClick) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `secondary mod-${label.toLowerCase()}`;
    const hidden = document.createElement('span');
    hidden.className = 'visually-hidden';
    hidden.textContent = ` ${context}`;
    button.append(label, hidden);
    button.addEventListener('click', () => onClick(button));
    return button;
  }

  function isMuted(name) {
    const until = state.mutes.get(key(name));
    return until !== undefined && until > Date.now();
  }

  // -------------------------------------------------------------------------
  // The dialog: what will be done, to whom, and why

  function ask({ title, description, quote = null, confirm, text = null, durations = null,
    reason = false, build, returnTo }) {
    els.title.textContent = title;
    els.description.textContent = description;
    els.quote.hidden = quote === null;
    els.quote.textContent = quote || '';
    els.textField.hidden = text === null;
    els.text.value = text || '';
    els.durationField.hidden = durations === null;
    els.duration.replaceChildren();
    for (const [seconds, label] of durations || []) {
      els.duration.append(new Option(label, String(seconds)));
    }
    if (durations) els.duration.selectedIndex = 1;
    els.reasonField.hidden = !reason;
    els.reason.value = '';
    els.error.textContent = '';
    els.text.removeAttribute('aria-invalid');
    els.confirm.textContent = confirm;
    state.action = build;
    state.returnTo = returnTo;
    els.dialog.showModal();
    (text !== null ? els.text : durations ? els.duration : reason ? els.reason : els.cancel).focus();
  }

  function askEdit(item) {
    const id = Number(item.dataset.id);
    ask({
      title: 'Edit your message',
      description: 'Everyone sees the new text, marked "edited".',
      confirm: 'Save',
      text: item.querySelector('.text').textContent,
      build: () => {
        const text = els.text.value;
        if (text.trim() === '') {
          els.error.textContent = 'Write something, or delete the message instead.';
          els.text.setAttribute('aria-invalid', 'true');
          els.text.focus();
          return null;
        }
        return { type: 'edit', id, text };
      },
      returnTo: item.querySelector('.mod-edit'),
    });
  }

  function askDelete(item) {
    const id = Number(item.dataset.id);
    const sender = item.querySelector('.sender').textContent;
    ask({
      title: isMe(sender) ? 'Delete your message?' : `Delete ${sender}'s message?`,
      description: 'Everyone will see "message deleted" instead. This cannot be undone.',
      quote: item.querySelector('.text').textContent,
      confirm: 'Delete',
      build: () => ({ type: 'delete', id }),
      returnTo: item.querySelector('.mod-delete'),
    });
  }

  function askMute(name, returnTo) {
    ask({
      title: `Mute ${name}?`,
      description: `${name} stays in the room but may not post until the time is up.`,
      confirm: 'Mute',
      durations: MUTE_CHOICES,
      build: () => ({ type: 'mute', username: name, seconds: Number(els.duration.value) }),
      returnTo,
    });
  }

  function askKick(name, returnTo) {
    ask({
      title: `Remove ${name} from the room?`,
      description: `${name} is disconnected now and may come back.`,
      confirm: 'Kick',
      reason: true,
      build: () => ({ type: 'kick', username: name, reason: els.reason.value.trim() }),
      returnTo,
    });
  }

  function askBan(name, returnTo) {
    ask({
      title: `Ban ${name} from the room?`,
      description: `${name} is disconnected now and may not come back until the time is up.`,
      confirm: 'Ban',
      durations: BAN_CHOICES,
      reason: true,
      build: () => ({
        type: 'ban', username: name, seconds: Number(els.duration.value), reason: els.reason.value.trim(),
      }),
      returnTo,
    });
  }

  els.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const message = state.action ? state.action() : null;
    if (message === null) return;
    closeDialog();
    command(message);
  });

  els.cancel.addEventListener('click', () => closeDialog());
  // Escape closes the dialog natively; put the focus back all the same.
  els.dialog.addEventListener('close', () => restoreFocus());

  function closeDialog() {
    if (els.dialog.open) els.dialog.close();
  }

  function restoreFocus() {
    state.action = null;
    const target = state.returnTo;
    state.returnTo = null;
    if (target && target.isConnected) {
      target.focus();
    } else if (document.activeElement === document.body || !document.activeElement) {
      els.chat.focus();
    }
  }

  function command(message) {
    els.status.textContent = '';
    page.send(message);
  }

  // -------------------------------------------------------------------------
  // The room's switches (moderators)

  els.lecture.addEventListener('change', () => {
    command({ type: 'room_mode', mode: els.lecture.checked ? 'lecture' : 'open' });
  });

  els.unbanForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = els.unbanName.value.trim();
    if (name === '') {
      els.status.textContent = 'Type the screen name whose ban to lift.';
      els.unbanName.focus();
      return;
    }
    command({ type: 'unban', username: name });
    els.unbanName.value = '';
  });

  // -------------------------------------------------------------------------
  // What the server says

  document.addEventListener('threadchat:message', (event) => {
    const msg = event.detail;
    switch (msg && msg.type) {
      case 'delete': onDelete(msg); break;
      case 'edit': onEdit(msg); break;
      case 'mute': onMute(msg); break;
      case 'unmute': onUnmute(msg); break;
      case 'kick': onKick(msg); break;
      case 'ban': onBan(msg); break;
      case 'unban': onUnban(msg); break;
      case 'room_mode': onRoomMode(msg); break;
      case 'error':
        if (!COMMANDS.has(msg.request)) return;   // client.js shows it
        onRefused(msg);
        break;
      case 'login':
        // Perhaps ours (who we are decides the controls): once client.js
        // has taken it in. New messages need no such pass (see the end).
        queueMicrotask(refreshAll);
        return;
      default:
        return;
    }
    event.preventDefault();
    queueMicrotask(refreshAll);
  });

  document.addEventListener('threadchat:close', (event) => {
    closeDialog();
    state.mode = 'open';
    state.mutes.clear();
    showMode();
    queueMicrotask(refreshAll);
    const { code, reason } = event.detail;
    if (code !== CLOSE_KICKED && code !== CLOSE_BANNED) return;
    // Not a dropped line: say so, and do not invite a plain reconnect.
    event.preventDefault();
    const kicked = code === CLOSE_KICKED;
    const headline = kicked ? 'Removed from the room' : 'Banned from the room';
    const details = kicked ? `${reason || 'by a moderator'}; press Reconnect to join again` : reason;
    if (!state.removed) {
      addLine(kicked ? `You were removed from the room: ${reason || 'by a moderator'}.`
        : `You were banned from the room: ${reason}.`);
    }
    state.removed = false;
    els.serverError.replaceChildren();
    const strong = document.createElement('strong');
    strong.textContent = headline;
    els.serverError.append(strong, details ? `: ${details}` : '');
    els.server.setAttribute('aria-invalid', 'true');
    els.connect.textContent = 'Reconnect';
    els.connect.focus();
  });

  function messageItem(id) {
    if (!Number.isSafeInteger(id)) return null;
    return els.chat.querySelector(`.message[data-id="${id}"]`);
  }

  function onDelete(msg) {
    const item = messageItem(msg.id);
    if (!item) return;
    if (item.contains(document.activeElement)) els.chat.focus();
    item.classList.add('deleted');
    for (const extra of item.querySelectorAll('.mod-actions, .edited')) extra.remove();
    item.querySelector('.text').textContent = 'message deleted';
    if (state.returnTo && item.contains(state.returnTo)) closeDialog();
  }

  function onEdit(msg) {
    const item = messageItem(msg.id);
    if (!item || item.classList.contains('deleted')) return;
    item.querySelector('.text').textContent = String(msg.text);
    item.dataset.edited = String(msg.edited_ts || Date.now());
  }

  function onMute(msg) {
    state.mutes.set(key(msg.username), Number(msg.until));
    const until = when(msg.until);
    addLine(isMe(msg.username)
      ? `You are muted until ${until} (by ${msg.by}).`
      : `${msg.username} is muted until ${until} (by ${msg.by}).`);
  }

  function onUnmute(msg) {
    state.mutes.delete(key(msg.username));
    addLine(isMe(msg.username) ? `You may post again (unmuted by ${msg.by}).`
      : `${msg.username} may post again (unmuted by ${msg.by}).`);
  }

  function onKick(msg) {
    if (isMe(msg.username)) state.removed = true;
    const why = msg.reason ? `: ${msg.reason}` : '';
    addLine(isMe(msg.username) ? `You were removed from the room by ${msg.by}${why}.`
      : `${msg.username} was removed from the room by ${msg.by}${why}.`);
  }

  function onBan(msg) {
    if (isMe(msg.username)) state.removed = true;
    const why = msg.reason ? `: ${msg.reason}` : '';
    const until = when(msg.until);
    addLine(isMe(msg.username) ? `You are banned from the room until ${until} by ${msg.by}${why}.`
      : `${msg.username} is banned from the room until ${until} by ${msg.by}${why}.`);
  }

  function onUnban(msg) {
    addLine(`${msg.username} may join again (ban lifted by ${msg.by}).`);
  }

  function onRoomMode(msg) {
    const mode = msg.mode === 'lecture' ? 'lecture' : 'open';
    const changed = mode !== state.mode;
    state.mode = mode;
    showMode();
    // A joiner is told the mode without a `by`; a change names who made it.
    if (msg.by !== undefined && changed) {
      addLine(mode === 'lecture'
        ? `${msg.by} turned on lecture mode: only moderators may post.`
        : `${msg.by} ended lecture mode: everyone may post.`);
    }
  }

  function showMode() {
    els.mode.textContent = state.mode === 'lecture'
      ? 'Lecture mode: only moderators may post.' : '';
    els.lecture.checked = state.mode === 'lecture';
  }

  // A refused command: said in the status line, and the switch set back.
  function onRefused(msg) {
    els.lecture.checked = state.mode === 'lecture';
    els.status.replaceChildren();
    const strong = document.createElement('strong');
    const error = String(msg.error);
    strong.textContent = error.charAt(0).toUpperCase() + error.slice(1);
    els.status.append(strong, msg.details ? `: ${msg.details}` : '');
  }

  // A line in the chat, like client.js's notices; the log reads it out.
  function addLine(text) {
    const line = document.createElement('p');
    line.className = 'system';
    line.textContent = text;
    els.chat.append(line);
    els.chat.scrollTop = els.chat.scrollHeight;
  }

  // An end time in the reader's own time zone.
  function when(ms) {
    const date = new Date(Number(ms));
    if (Number.isNaN(date.getTime())) return 'further notice';
    const today = date.toDateString() === new Date().toDateString();
    return today
      ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : date.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  // -------------------------------------------------------------------------
  // Watching what client.js draws

  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (!(node instanceof Element)) continue;
        if (node.matches('.message')) decorateMessage(node);
        for (const item of node.querySelectorAll('.message')) decorateMessage(item);
      }
    }
  }).observe(els.chat, { childList: true, subtree: true });

  // The list is small: every change re-checks every user (idempotent).
  new MutationObserver(() => {
    for (const li of els.users.children) decorateUser(li);
  }).observe(els.users, { childList: true, subtree: true });

  setInterval(refreshAll, RECHECK_MS);
  refreshAll();
})();
