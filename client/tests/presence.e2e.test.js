// End-to-end test: the page asks for presence as changes, and keeps its list
// of users from `presence` messages, while a tutorial client in the same
// room (a bare WebSocket, no "presence" in its login) comes, renames and
// goes.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, stopServer, launchBrowser, openPage } = require('./harness');
const { usersList, systemLines, waitUntil, connectByKeyboard } = require('./page');

const DESKTOP = { width: 1100, height: 760 };

let server;
let browser;
let url;
let walter;          // the page
let tutorial;        // a page whose script is a bare tutorial client
const received = []; // every text frame walter's page received, parsed
const sent = [];     // every text frame walter's page sent, parsed

describe('presence as changes in the page', { timeout: 60_000 }, () => {
  before(async () => {
    server = await startServer();
    url = `http://127.0.0.1:${server.port}/`;
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('logs in asking for changes and is answered with the whole list once', async () => {
    walter = await openPage(browser, url, DESKTOP);
    const { page } = walter;
    page.on('websocket', (ws) => {
      ws.on('framereceived', (frame) => received.push(JSON.parse(frame.payload)));
      ws.on('framesent', (frame) => sent.push(JSON.parse(frame.payload)));
    });
    await connectByKeyboard(page);
    await page.keyboard.type('walter');
    await page.keyboard.press('Enter');
    await waitUntil(page, usersList, ['walter (you)'], "walter's users list");
    const login = sent.find((m) => m.type === 'login');
    assert.equal(login.presence, 'changes');
  });

  it('follows a tutorial client coming, renaming and going from presence messages',
    async () => {
      tutorial = await openPage(browser, url, DESKTOP);
      const wsUrl = `ws://127.0.0.1:${server.port}/`;
      await tutorial.page.evaluate((address) => new Promise((resolve) => {
        const socket = new WebSocket(address);
        window.tutorialSocket = socket;
        socket.addEventListener('open', () => {
          socket.send(JSON.stringify({ type: 'login', username: 'maria' }));
          resolve();
        });
      }), wsUrl);
      await waitUntil(walter.page, usersList, ['walter (you)', 'maria'], "walter's list");

      await tutorial.page.evaluate(() => window.tutorialSocket.send(
        JSON.stringify({ type: 'login', username: 'mary' })));
      await waitUntil(walter.page, usersList, ['walter (you)', 'mary'], "walter's list");

      await tutorial.page.evaluate(() => window.tutorialSocket.send(
        JSON.stringify({ type: 'disconnect', username: 'mary' })));
      await waitUntil(walter.page, usersList, ['walter (you)'], "walter's list");

      assert.deepEqual(await walter.page.evaluate(systemLines),
        ['walter joined', 'maria joined', 'maria is now mary', 'mary left']);
    });

  it('was sent one whole list (its own login) and the rest as presence messages', () => {
    const kinds = received.map((m) => m.type).filter((t) => t !== 'history');
    assert.deepEqual(kinds, ['login', 'presence', 'presence', 'presence']);
    assert.deepEqual(received.find((m) => m.type === 'login').active_users, ['walter']);
    assert.deepEqual(walter.record.consoleErrors, []);
  });
});
