// Reading in sign-in mode, in a browser: the page asks for older messages
// and for the room list with its token in an Authorization header (never in
// a URL), "Load older" works as without sign-in, and a token whose `rooms`
// claim names one room shows only that room in the list.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, stopServer, launchBrowser, openPage, makeToken } = require('./harness');
const {
  waitUntil, chatTexts, lastMessage, systemLines, roomsList, connectByMouse, say,
} = require('./page');

const DESKTOP = { width: 1100, height: 760 };
const SECRET = 'read-access-e2e-secret-of-at-least-32-bytes';
// Chats a newcomer is shown: fewer than walter sends, so older ones are left
// for "Load older".
const HISTORY = 2;
const SAID = ['one', 'two', 'three', 'four', 'five'];

let server;
let browser;
let origin;
let walter;
let maria;
let mariaToken;
const apiRequests = [];   // maria's requests to /api/, with their headers
const opened = [];

// A fresh page (its own browser context), recorded for the console check.
async function newPage() {
  const page = await openPage(browser, 'about:blank', DESKTOP);
  opened.push(page);
  return page;
}

// Opens `url` (a room with #token=...), connects, and waits until the
// server has signed the page in as `name`.
async function connectAs(page, url, name) {
  await page.goto(url);
  await page.locator('#token-form').waitFor({ state: 'visible' });
  await connectByMouse(page);
  await page.locator('#name-display', { hasText: `Signed in as ${name}` }).waitFor();
}

describe('reading in sign-in mode, in a browser', { timeout: 90_000 }, () => {
  before(async () => {
    server = await startServer(['--jwt-secret', SECRET, '--history', String(HISTORY),
      '--rate-limit', '0']);
    origin = `http://127.0.0.1:${server.port}`;
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('loads older messages, sending the token in an Authorization header', async () => {
    const walterToken = makeToken(['--jwt-secret', SECRET, '--user', 'walter', '--ttl', '1h']);
    walter = await newPage();
    await connectAs(walter.page, `${origin}/r/algebra#token=${walterToken}`, 'walter');
    for (const text of SAID) {
      await say(walter.page, text);
      await waitUntil(walter.page, lastMessage, text, "walter's last message");
    }

    const tomToken = makeToken(['--jwt-secret', SECRET, '--user', 'tom', '--ttl', '1h']);
    const tom = await newPage();
    await connectAs(tom.page, `${origin}/r/staff#token=${tomToken}`, 'tom');

    mariaToken = makeToken(['--jwt-secret', SECRET, '--user', 'maria', '--ttl', '1h',
      '--rooms', 'algebra']);
    maria = await newPage();
    maria.page.on('request', (r) => {
      if (r.url().includes('/api/')) apiRequests.push({ url: r.url(), headers: r.headers() });
    });
    await connectAs(maria.page, `${origin}/r/algebra#token=${mariaToken}`, 'maria');
    await waitUntil(maria.page, chatTexts, SAID.slice(-HISTORY), "maria's earlier messages");
    assert.ok((await maria.page.evaluate(systemLines))
      .includes('Some earlier messages are not shown.'));

    await maria.page.click('#load-older');
    await maria.page.locator('#chat .system', { hasText: 'This is the start of the room.' })
      .waitFor();
    assert.deepEqual(await maria.page.evaluate(chatTexts), SAID);

    const older = apiRequests.filter((r) => r.url.includes('/messages'));
    assert.equal(older.length, 1);
    assert.equal(older[0].headers.authorization, `Bearer ${mariaToken}`);
  });

  it('lists only the rooms the token opens', async () => {
    await waitUntil(walter.page, roomsList, ['algebra|2 users', 'staff|1 user'],
      "walter's rooms (a token for every room)");
    // maria's list was fetched when she signed in; ask again now that all
    // three are in.
    await maria.page.evaluate(() => refreshRooms());
    await waitUntil(maria.page, roomsList, ['algebra|2 users'], "maria's rooms (algebra only)");
    const lists = apiRequests.filter((r) => r.url.endsWith('/api/rooms'));
    assert.ok(lists.length > 0, 'the page asked for the room list');
    for (const r of lists) assert.equal(r.headers.authorization, `Bearer ${mariaToken}`);
  });

  it('never put a token in a request URL, and asked nothing before signing in', () => {
    const leaks = apiRequests.filter((r) => r.url.includes(mariaToken.split('.')[2]) ||
      /token=/.test(r.url));
    assert.deepEqual(leaks, []);
    const unsigned = apiRequests.filter((r) => !r.url.endsWith('/api/info') &&
      !r.headers.authorization);
    assert.deepEqual(unsigned, [], 'every read carried the token');
  });

  it('logs no errors to the browser console', () => {
    for (const { record } of opened) assert.deepEqual(record.consoleErrors, []);
  });
});
