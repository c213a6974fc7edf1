// Rooms in the browser: the page at /r/<name> is that room's chat, rooms do
// not hear each other, the room list and "go to room" work by keyboard, and
// "copy link" copies the room's address (or shows it when it cannot).
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startServer, stopServer, launchBrowser, openPage } = require('./harness');
const {
  usersList, chatMessages, systemLines, roomsList, waitUntil, focusedId, focused, tabTo,
  connectByKeyboard, join, say,
} = require('./page');

const DESKTOP = { width: 1100, height: 760 };
const PHONE = { width: 390, height: 844 };
const OUTPUT_DIR = path.join(__dirname, 'output');

let server;
let browser;
let origin;
let walter;   // in algebra
let maria;    // in algebra
let laura;    // in physics
const others = [];   // pages opened by single tests

describe('rooms in a browser', { timeout: 90_000 }, () => {
  before(async () => {
    server = await startServer();
    origin = `http://127.0.0.1:${server.port}`;
    browser = await launchBrowser();
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('the page at /r/<name> is that room: its server URL and its heading', async () => {
    walter = await openPage(browser, `${origin}/r/algebra`, DESKTOP);
    const { page } = walter;
    assert.equal(await page.inputValue('#server'), `ws://127.0.0.1:${server.port}/r/algebra`);
    assert.equal(await page.textContent('#room-title'), 'algebra');
    assert.match(await page.title(), /^algebra/);
  });

  it('a room name in capitals is the same room, shown in lower case', async () => {
    maria = await openPage(browser, `${origin}/r/Algebra`, DESKTOP);
    assert.equal(await maria.page.inputValue('#server'),
      `ws://127.0.0.1:${server.port}/r/algebra`);
    assert.equal(await maria.page.textContent('#room-title'), 'algebra');
  });

  it('the page at / is the lobby', async () => {
    const lobby = await openPage(browser, `${origin}/`, DESKTOP);
    others.push(lobby);
    assert.equal(await lobby.page.inputValue('#server'), `ws://127.0.0.1:${server.port}/`);
    assert.equal(await lobby.page.textContent('#room-title'), 'lobby');
  });

  it('two users in one room see each other; one in another room sees neither', async () => {
    await connectByKeyboard(walter.page);
    await walter.page.keyboard.type('walter');
    await walter.page.keyboard.press('Enter');
    await waitUntil(walter.page, usersList, ['walter (you)'], "walter's users");
    await join(maria.page, 'maria');
    laura = await openPage(browser, `${origin}/r/physics`, DESKTOP);
    await join(laura.page, 'laura');

    const senderText = () => [...document.querySelectorAll('#chat .message')].map((m) =>
      `${m.querySelector('.sender').textContent}|${m.querySelector('.text').textContent}`);
    await say(walter.page, 'Shall we start on chapter 3?');
    // Maria answers what she has read: two pages sending at once may reach
    // the server in either order.
    await waitUntil(maria.page, senderText, ['walter|Shall we start on chapter 3?'],
      "maria's chat before her answer");
    await say(maria.page, 'Yes, exercise 3.1 first.');
    await say(laura.page, 'Anyone here for physics?');

    const algebra = ['walter|Shall we start on chapter 3?', 'maria|Yes, exercise 3.1 first.'];
    await waitUntil(walter.page, senderText, algebra, "walter's chat");
    await waitUntil(maria.page, senderText, algebra, "maria's chat");
    await waitUntil(laura.page, senderText, ['laura|Anyone here for physics?'], "laura's chat");
    assert.deepEqual(await walter.page.evaluate(usersList), ['walter (you)', 'maria']);
    assert.deepEqual(await maria.page.evaluate(usersList), ['walter', 'maria (you)']);
    assert.deepEqual(await laura.page.evaluate(usersList), ['laura (you)']);
    assert.deepEqual(await laura.page.evaluate(systemLines), ['laura joined'],
      'laura hears nothing of the algebra room');
    assert.deepEqual(await walter.page.evaluate(systemLines), ['walter joined', 'maria joined']);
    assert.deepEqual((await walter.page.evaluate(chatMessages)).map((m) => m.split('|')[0]),
      ['right', 'left'], 'own messages still on the right');
  });

  it('lists the rooms with their user counts, this one marked as current', async () => {
    const expected = ['algebra|2 users', 'physics|1 user'];
    await waitUntil(walter.page, roomsList, expected, "walter's room list");
    await waitUntil(laura.page, roomsList, expected, "laura's room list");
    const current = await walter.page.$$eval('#rooms-list a[aria-current="page"]',
      (links) => links.map((a) => a.textContent));
    assert.deepEqual(current, ['algebra']);
    assert.equal(await walter.page.getAttribute('#rooms-list a >> text=physics', 'href'),
      `${origin}/r/physics`);
  });

  it('refreshes the room list by itself while open', async () => {
    const tom = await openPage(browser, `${origin}/r/chemistry`, DESKTOP);
    others.push(tom);
    await join(tom.page, 'tom');
    // Nothing happens on walter's page: the next periodic refresh shows it.
    await waitUntil(walter.page, roomsList,
      ['algebra|2 users', 'chemistry|1 user', 'physics|1 user'], "walter's room list", 12_000);
    await tom.page.close();
    await waitUntil(walter.page, roomsList, ['algebra|2 users', 'physics|1 user'],
      "walter's room list", 12_000);
  });

  it('goes to a listed room by keyboard alone', async () => {
    const visitor = await openPage(browser, `${origin}/`, DESKTOP);
    others.push(visitor);
    const { page } = visitor;
    await waitUntil(page, roomsList, ['algebra|2 users', 'physics|1 user'], "the visitor's list");
    await tabTo(page, 'a:physics');
    await Promise.all([page.waitForURL(`${origin}/r/physics`), page.keyboard.press('Enter')]);
    assert.equal(await page.textContent('#room-title'), 'physics');
    assert.equal(await page.inputValue('#server'), `ws://127.0.0.1:${server.port}/r/physics`);
    assert.equal(await focusedId(page), 'server', 'the new room starts at its first step');
  });

  it('refuses a bad room name next to the field, then goes to a good one, by keyboard',
    async () => {
      const visitor = await openPage(browser, `${origin}/r/algebra`, DESKTOP);
      others.push(visitor);
      const { page } = visitor;
      await tabTo(page, 'input#room-input');
      await page.keyboard.type('maths & more');
      await page.keyboard.press('Enter');
      const error = page.locator('#room-form #room-error');
      await error.waitFor({ state: 'visible' });
      assert.match(await error.textContent(), /Not a room name/);
      assert.equal(await page.getAttribute('#room-input', 'aria-invalid'), 'true');
      assert.equal(await focusedId(page), 'room-input', 'focus stays on the field to fix it');
      assert.equal(page.url(), `${origin}/r/algebra`, 'the page did not move');

      await page.keyboard.press('Control+A');
      await page.keyboard.type('Number-Theory_2');
      await Promise.all([
        page.waitForURL(`${origin}/r/number-theory_2`),
        page.keyboard.press('Enter'),
      ]);
      assert.equal(await page.textContent('#room-title'), 'number-theory_2');
    });

  it('copies the room link, and says so', async () => {
    const visitor = await openPage(browser, `${origin}/r/algebra`, DESKTOP);
    others.push(visitor);
    const { page } = visitor;
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    await tabTo(page, 'button#copy-link');
    await page.keyboard.press('Enter');
    await page.locator('#copy-status', { hasText: 'Link copied' }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${origin}/r/algebra`);
    assert.equal(await page.isHidden('#copy-fallback'), true);
    assert.equal(await page.getAttribute('#copy-status', 'role'), 'status',
      'the confirmation is announced');
  });

  it('without a clipboard, shows the link selected for copying by hand', async () => {
    const visitor = await openPage(browser, `${origin}/r/physics`, DESKTOP);
    others.push(visitor);
    const { page } = visitor;
    await page.evaluate(() => Object.defineProperty(Navigator.prototype, 'clipboard',
      { get: () => undefined, configurable: true }));
    await page.click('#copy-link');
    await page.locator('#copy-fallback').waitFor({ state: 'visible' });
    assert.equal(await page.inputValue('#copy-url'), `${origin}/r/physics`);
    assert.equal(await focused(page), 'input#copy-url');
    const selected = await page.$eval('#copy-url', (input) =>
      input.value.slice(input.selectionStart, input.selectionEnd));
    assert.equal(selected, `${origin}/r/physics`, 'the whole link is selected');
    assert.match(await page.textContent('#copy-status'), /Copy the link/);
  });

  it('fits a phone screen without sideways scrolling', async () => {
    const { page } = walter;
    await page.setViewportSize(PHONE);
    const overflow = await page.evaluate(() =>
      document.documentElement.scrollWidth - document.documentElement.clientWidth);
    await page.screenshot({ path: path.join(OUTPUT_DIR, 'room-phone.png'), fullPage: true });
    await page.setViewportSize(DESKTOP);
    assert.equal(overflow, 0, 'nothing sticks out sideways');
    await page.screenshot({ path: path.join(OUTPUT_DIR, 'room.png') });
  });

  it('logs no errors to the browser console', () => {
    for (const { record } of [walter, maria, laura, ...others]) {
      assert.deepEqual(record.consoleErrors, []);
      assert.deepEqual(record.dialogs, []);
    }
  });
});
