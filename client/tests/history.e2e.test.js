// History in the browser: a late joiner sees the room's earlier messages
// under a quiet divider, in her own time zone; a reconnect asks only for
// what it missed ("since") and shows nothing twice; "Load older" fetches the
// page before the oldest message shown and puts it on top.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, stopServer, launchBrowser, openPage } = require('./harness');
const {
  waitUntil, join, say, chatTexts, lastMessage, systemLines, focused, tabTo,
} = require('./page');

const DESKTOP = { width: 1100, height: 760 };
// maria reads in another time zone than the machine's, to show that times
// are converted for the reader.
const MARIA_ZONE = 'Asia/Kolkata';
// The server's --history-max: most chats a reconnect is sent.
const HISTORY_MAX = 5;

let server;
let browser;
let origin;
let walter;
let maria;
const frames = { sent: [], received: [] };   // maria's WebSocket traffic, parsed

// page.evaluate below reaches the page script's own top-level names: `send`,
// `me`, `socket` (the WebSocket) and `past` (what the page knows of the
// room's history, e.g. past.lastId).

// Everything the chat shows from the top, in order: divider, notes, the
// joins and each message's text, so positions can be checked.
const chatLines = () => [...document.querySelectorAll('#chat .message, #chat .system, #chat .divider')]
  .map((el) => {
    if (el.classList.contains('message')) return el.querySelector('.text').textContent;
    if (el.classList.contains('divider')) return `-- ${el.textContent} --`;
    return `[${el.textContent}]`;
  });

function recordFrames(page) {
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => frames.sent.push(JSON.parse(f.payload)));
    ws.on('framereceived', (f) => frames.received.push(JSON.parse(f.payload)));
  });
}

// Sends many chats at once through the page's own connection.
async function sendMany(page, texts) {
  await page.evaluate((all) => {
    for (const text of all) send({ type: 'chat', text, username: me });
  }, texts);
}

describe('history in a browser', { timeout: 120_000 }, () => {
  before(async () => {
    // No rate limit: one test sends sixty messages at once.
    server = await startServer(['--rate-limit', '0', '--history-max', String(HISTORY_MAX)]);
    origin = `http://127.0.0.1:${server.port}`;
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('shows a late joiner the earlier messages under a divider, then her join', async () => {
    walter = await openPage(browser, `${origin}/r/algebra`, DESKTOP);
    await join(walter.page, 'walter');
    await say(walter.page, 'First: read chapter 3.');
    await say(walter.page, 'Then exercise 3.1.');
    await waitUntil(walter.page, chatTexts, ['First: read chapter 3.', 'Then exercise 3.1.'],
      "walter's chat");

    maria = await openPage(browser, `${origin}/r/algebra`, DESKTOP,
      { timezoneId: MARIA_ZONE, locale: 'en-US' });
    recordFrames(maria.page);
    await join(maria.page, 'maria');
    await waitUntil(maria.page, chatLines, [
      '-- Earlier messages --',
      'First: read chapter 3.',
      'Then exercise 3.1.',
      '[maria joined]',
    ], "maria's chat");
    await say(maria.page, 'Got it.');
    await waitUntil(maria.page, chatTexts,
      ['First: read chapter 3.', 'Then exercise 3.1.', 'Got it.'], "maria's chat");
    assert.equal(await maria.page.isHidden('#load-older'), true, 'nothing older to load');
    assert.deepEqual(await walter.page.evaluate(systemLines), ['walter joined', 'maria joined'],
      'walter sees no history divider for his own room');
  });

  it("shows each message's time from the server, in the reader's time zone", async () => {
    const history = frames.received.find((m) => m.type === 'history');
    assert.ok(history, 'maria received a history message');
    const times = await maria.page.$$eval('#chat .message time',
      (els) => els.map((t) => ({ datetime: t.dateTime, text: t.textContent })));
    assert.equal(times.length, 3);
    history.messages.forEach((m, i) => {
      assert.equal(times[i].datetime, new Date(m.ts).toISOString());
      const local = new Intl.DateTimeFormat('en-US',
        { timeZone: MARIA_ZONE, hour: '2-digit', minute: '2-digit' }).format(new Date(m.ts));
      // Spaces differ between ICU versions (U+202F before AM/PM): compare as plain spaces.
      const plain = (text) => text.replace(/\s/g, ' ');
      assert.ok(plain(times[i].text).endsWith(plain(local)),
        `"${times[i].text}" is the time in ${MARIA_ZONE} (${local})`);
    });
  });

  it('after a reconnect, logs in with since and fills the gap, nothing twice', async () => {
    const { page } = maria;
    // The connection drops (the page's own socket closes under it)...
    await page.evaluate(() => socket.close());
    await page.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
    // ... and the room goes on without her.
    await say(walter.page, 'Maria, you missed this.');
    await say(walter.page, 'And this.');
    await waitUntil(walter.page, chatTexts, ['First: read chapter 3.', 'Then exercise 3.1.',
      'Got it.', 'Maria, you missed this.', 'And this.'], "walter's chat");

    // The page's newest id is made one older than it is, so the server's
    // answer overlaps what is shown by one message: it must not appear twice.
    const lastId = await page.evaluate(() => past.lastId);
    await page.evaluate(() => { past.lastId -= 1; });     
    frames.sent.length = 0;
    await page.keyboard.press('Enter');   // focus is on Reconnect
    await page.locator('#name-display', { hasText: 'Signed in as maria' }).waitFor();

    const loginSent = frames.sent.find((m) => m.type === 'login');
    assert.deepEqual(loginSent, { type: 'login', username: 'maria', presence: 'changes', since: lastId - 1 });
    await waitUntil(page, chatLines, [
      '-- Earlier messages --',
      'First: read chapter 3.',
      'Then exercise 3.1.',
      '[maria joined]',
      'Got it.',
      '[Connection lost.]',
      'Maria, you missed this.',
      'And this.',
      '[maria joined]',
    ], "maria's chat after the reconnect");
    const ids = await page.$$eval('#chat .message', (els) => els.map((e) => e.dataset.id));
    assert.equal(new Set(ids).size, ids.length, 'every message id shown once');
  });

  it('says so quietly when the gap was too long to fill', async () => {
    const { page } = maria;
    await page.evaluate(() => socket.close());
    await page.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
    const gap = Array.from({ length: HISTORY_MAX + 2 }, (_, i) => `gap ${i + 1}`);
    await sendMany(walter.page, gap);
    await waitUntil(walter.page, lastMessage, gap.at(-1), "walter's last message");

    await page.keyboard.press('Enter');
    await page.locator('#name-display', { hasText: 'Signed in as maria' }).waitFor();
    await waitUntil(page, () => {
      const lines = [...document.querySelectorAll('#chat .message, #chat .system')]
        .map((el) => el.querySelector('.text')?.textContent ?? `[${el.textContent}]`);
      return lines.slice(lines.lastIndexOf('[Connection lost.]'));
    }, [
      '[Connection lost.]',
      '[Some messages sent while you were away are not shown.]',
      ...gap.slice(-HISTORY_MAX),
      '[maria joined]',
    ], "maria's chat after a long gap");
  });

  it('loads older messages above the earlier ones, by keyboard', async () => {
    const texts = Array.from({ length: 60 }, (_, i) => `number ${i + 1}`);
    await sendMany(walter.page, texts);
    await waitUntil(walter.page, lastMessage, 'number 60', "walter's last message");

    const laura = await openPage(browser, `${origin}/r/algebra`, DESKTOP);
    const requests = [];
    laura.page.on('request', (r) => requests.push(r.url()));
    await join(laura.page, 'laura');
    await laura.page.locator('#chat .divider').waitFor();
    const lines = await laura.page.evaluate(chatLines);
    // The server's default: the last 50.
    assert.deepEqual(lines.slice(0, 3),
      ['[Some earlier messages are not shown.]', '-- Earlier messages --', 'number 11']);
    assert.equal(lines.filter((l) => l.startsWith('number')).length, 50);

    await tabTo(laura.page, 'button#load-older');
    await laura.page.keyboard.press('Enter');
    await laura.page.locator('#chat .system', { hasText: 'This is the start of the room.' })
      .waitFor();
    const expected = [
      '[This is the start of the room.]',
      '-- Earlier messages --',
      'First: read chapter 3.', 'Then exercise 3.1.', 'Got it.', 'Maria, you missed this.',
      'And this.',
      ...Array.from({ length: HISTORY_MAX + 2 }, (_, i) => `gap ${i + 1}`),
      ...texts,
      '[laura joined]',
    ];
    assert.deepEqual(await laura.page.evaluate(chatLines), expected,
      'the older page sits between the divider and the first earlier message, ' +
      'and the note that some are not shown is gone');
    assert.equal(await laura.page.isHidden('#load-older'), true);
    assert.equal(await focused(laura.page), 'div#chat',
      'with the button gone, the focus moves to the messages, not off the page');

    const number11 = await laura.page.$$eval('#chat .message', (els) =>
      Number(els.find((e) => e.querySelector('.text').textContent === 'number 11').dataset.id));
    const older = requests.filter((u) => u.includes('/messages'));
    assert.equal(older.length, 1);
    const asked = new URL(older[0]);
    assert.equal(asked.pathname, '/api/rooms/algebra/messages');
    assert.equal(asked.searchParams.get('limit'), '50');
    assert.equal(Number(asked.searchParams.get('before')), number11,
      'asked for what came before the oldest message shown (number 11)');
    await laura.page.close();
  });

  it('starts over when the server no longer knows the last message seen', async () => {
    // The server restarts on the same port with an empty store: its ids
    // begin at 1 again, ids the pages have seen before for other messages.
    const port = server.port;
    const errorsBefore = [walter, maria].map((u) => u.record.consoleErrors.length);
    await stopServer(server);
    await walter.page.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
    await maria.page.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
    server = await startServer(['--rate-limit', '0'], { port });

    await walter.page.keyboard.press('Enter');   // Reconnect
    await walter.page.locator('#name-display', { hasText: 'Signed in as walter' }).waitFor();
    await say(walter.page, 'Fresh start.');
    await waitUntil(walter.page, lastMessage, 'Fresh start.', "walter's last message");

    await maria.page.keyboard.press('Enter');
    await maria.page.locator('#name-display', { hasText: 'Signed in as maria' }).waitFor();
    await waitUntil(maria.page, () => {
      const lines = [...document.querySelectorAll('#chat .message, #chat .system, #chat .divider')]
        .map((el) => el.querySelector('.text')?.textContent ??
          (el.classList.contains('divider') ? `-- ${el.textContent} --` : `[${el.textContent}]`));
      return lines.slice(lines.lastIndexOf('[Connection lost.]'));
    }, [
      '[Connection lost.]',
      '[The server no longer has the messages above.]',
      '-- Earlier messages --',
      'Fresh start.',
      '[maria joined]',
    ], "maria's chat after the server's reset");
    // A room-list refresh already on its way when the server went down is
    // refused, and the browser logs that; it is the outage this test made,
    // not a fault of the page. Anything else stays for the next test.
    [walter, maria].forEach((u, i) => {
      const during = u.record.consoleErrors.splice(errorsBefore[i]);
      u.record.consoleErrors.push(...during.filter((e) => !e.includes('ERR_CONNECTION_REFUSED')));
    });
  });

  it('logs no errors to the browser console', () => {
    assert.deepEqual(walter.record.consoleErrors, []);
    assert.deepEqual(maria.record.consoleErrors, []);
  });
});
