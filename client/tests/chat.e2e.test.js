// End-to-end test: the real server, the real page, headless Chromium.
// Two people, walter and maria, each in their own browser context. The tests
// run in order and tell one story; each is named for the rule it checks.
// The story is told twice: over http and ws, and over https and wss with
// native TLS (--tls-cert), Chromium trusting the test's own certificate.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const {
  startServer, stopServer, launchBrowser, openPage, makeCertificates,
} = require('./harness');
const {
  usersList, chatMessages, lastMessage, systemLines, waitUntil, focusedId,
  connectByKeyboard, connectByMouse,
} = require('./page');

const DESKTOP = { width: 1100, height: 760 };
const PHONE = { width: 390, height: 844 };
const OUTPUT_DIR = path.join(__dirname, 'output');
const XSS = '<img src=x onerror=alert(1)>';

// --- The story -------------------------------------------------------------

// `scheme` is 'http' (the page over http, the chat over ws) or 'https'
// (both over TLS: the page must pick wss:// by itself).
function story(scheme) {
  const tls = scheme === 'https';
  const ws = tls ? 'wss' : 'ws';
  const shot = (name) => path.join(OUTPUT_DIR, `${name}${tls ? '-https' : ''}.png`);
  let certificates;   // with TLS: the test CA's leaf, for every server here
  let server;
  let secondServer;   // started by the reconnect test
  let browser;
  let url;
  let walter;   // { page, record }: uses the keyboard only
  let maria;    // { page, record }: uses the mouse
  const start = () => startServer(tls ? certificates.args : []);

  describe(`threadchat in a browser over ${scheme}`, { timeout: 60_000 }, () => {
    before(async () => {
      if (tls) certificates = makeCertificates();
      server = await start();
      url = `${scheme}://127.0.0.1:${server.port}/`;
      browser = await launchBrowser({ trustSpki: tls ? certificates.spki : undefined });
      fs.mkdirSync(OUTPUT_DIR, { recursive: true });
    });

    after(async () => {
      if (browser) await browser.close();
      await stopServer(server);
      await stopServer(secondServer);
      if (certificates) certificates.remove();
    });

    it(`prefills the server URL from the page (${ws}://) and shows the state Disconnected`,
      async () => {
        walter = await openPage(browser, url, DESKTOP);
        const { page } = walter;
        assert.equal(await page.inputValue('#server'), `${ws}://127.0.0.1:${server.port}/`);
        assert.equal(await page.textContent('#ws-status'), 'Disconnected');
        assert.equal(await page.isDisabled('#message'), true, 'no chatting before login');
      });

    it('connects and logs in by keyboard alone, focus following each step', async () => {
      const { page } = walter;
      await connectByKeyboard(page);
      assert.equal(await focusedId(page), 'name');

      await page.keyboard.type('walter');
      await page.keyboard.press('Enter');
      await waitUntil(page, usersList, ['walter (you)'], "walter's users list");
      assert.equal(await focusedId(page), 'message');
      assert.match(await page.textContent('#name-display'), /walter/);
      assert.deepEqual(await page.evaluate(systemLines), ['walter joined']);
    });

    it('refuses a name already taken (whatever its case) and shows why next to the name box',
      async () => {
        maria = await openPage(browser, url, DESKTOP);
        const { page } = maria;
        await connectByMouse(page);

        await page.fill('#name', 'WALTER');
        await page.click('#set-name');
        const error = page.locator('#name-error');
        await error.waitFor({ state: 'visible' });
        assert.notEqual((await error.textContent()).trim(), '', 'the error says something');
        assert.equal(await page.locator('#name-form #name-error').isVisible(), true,
          'the error sits in the name step');
        assert.equal(await page.getAttribute('#name', 'aria-invalid'), 'true');
        assert.equal(await focusedId(page), 'name', 'focus returns to the refused name');
        assert.deepEqual(await page.evaluate(usersList), [], 'a refused user sees no one');
        assert.equal(await page.isDisabled('#message'), true);
        await page.screenshot({ path: shot('name-refused') });
      });

    it('lets the refused user pick another name; both then see each other listed', async () => {
      const { page } = maria;
      await page.fill('#name', 'maria');
      await page.click('#set-name');
      await waitUntil(page, usersList, ['walter', 'maria (you)'], "maria's users list");
      await waitUntil(walter.page, usersList, ['walter (you)', 'maria'], "walter's users list");
      assert.equal(await page.textContent('#name-error'), '', 'the old error is gone');
      assert.deepEqual(await walter.page.evaluate(systemLines), ['walter joined', 'maria joined']);
    });

    it('relays messages to both, own ones with class right and the other\'s with left',
      async () => {
        // walter sends with Enter, maria with the Send button.
        await walter.page.keyboard.type('Hi Maria! Is this working?');
        await walter.page.keyboard.press('Enter');
        // Maria answers what she has read: two pages sending at once may
        // reach the server in either order.
        await waitUntil(maria.page, chatMessages, ['left|walter|Hi Maria! Is this working?'],
          "maria's chat before her answer");
        await maria.page.fill('#message', 'Loud and clear, Walter.');
        await maria.page.click('#send');
        await waitUntil(walter.page, chatMessages, [
          'right|walter|Hi Maria! Is this working?',
          'left|maria|Loud and clear, Walter.',
        ], "walter's chat");
        await waitUntil(maria.page, chatMessages, [
          'left|walter|Hi Maria! Is this working?',
          'right|maria|Loud and clear, Walter.',
        ], "maria's chat");
        assert.equal(await walter.page.inputValue('#message'), '', 'the box empties after sending');
      });

    it('shows markup in a message as text and runs nothing', async () => {
      await maria.page.fill('#message', `Try this: ${XSS}`);
      await maria.page.keyboard.press('Enter');
      const expected = `left|maria|Try this: ${XSS}`;
      await waitUntil(walter.page, lastMessage, `Try this: ${XSS}`, "walter's last message");
      assert.equal((await walter.page.evaluate(chatMessages)).at(-1), expected);
      for (const { page, record } of [walter, maria]) {
        assert.equal(await page.locator('img').count(), 0, 'no <img> element was created');
        assert.deepEqual(record.dialogs, [], 'no alert() dialog opened');
      }
    });

    it('saves screenshots of two users chatting', async () => {
      const { page } = walter;
      await page.keyboard.type('It shows up as plain text here, and nothing ran.');
      await page.keyboard.press('Enter');
      await waitUntil(maria.page, lastMessage, 'It shows up as plain text here, and nothing ran.',
        "maria's last message");

      const desktop = shot('two-users');
      await page.screenshot({ path: desktop });
      await page.setViewportSize(PHONE);
      await page.screenshot({ path: shot('two-users-phone'), fullPage: true });
      await page.setViewportSize(DESKTOP);
      assert.ok(fs.statSync(desktop).size > 10_000, 'the screenshot has content');
    });

    it('keeps the newest message in view', async () => {
      const { page } = walter;
      for (let i = 1; i <= 12; i++) {
        await maria.page.fill('#message', `line ${i}`);
        await maria.page.keyboard.press('Enter');
      }
      await waitUntil(page, lastMessage, 'line 12', "walter's last message");
      const inView = await page.$eval('#chat', (chat) => {
        const last = chat.lastElementChild.getBoundingClientRect();
        const box = chat.getBoundingClientRect();
        return last.bottom <= box.bottom + 1 && chat.scrollHeight > chat.clientHeight;
      });
      assert.equal(inView, true, 'the chat scrolled to its newest line');
    });

    it('removes a user who closes the tab from the other\'s list, after a disconnect message',
      async () => {
        // Playwright drops the frames of a page that is closing, so the page
        // notes what it sends in localStorage, which outlives the tab.
        await maria.page.evaluate(() => {
          const send = WebSocket.prototype.send;
          WebSocket.prototype.send = function (data) {
            const sent = JSON.parse(localStorage.getItem('sent') || '[]');
            localStorage.setItem('sent', JSON.stringify([...sent, JSON.parse(data)]));
            return send.call(this, data);
          };
        });
        // runBeforeUnload makes it a real tab close, with unload events.
        const closed = new Promise((resolve) => maria.page.once('close', resolve));
        await maria.page.close({ runBeforeUnload: true });
        await closed;

        await waitUntil(walter.page, usersList, ['walter (you)'], "walter's users list");
        assert.equal((await walter.page.evaluate(systemLines)).at(-1), 'maria left');

        const later = await maria.page.context().newPage();
        await later.goto(url);
        const sent = await later.evaluate(() => JSON.parse(localStorage.getItem('sent')));
        assert.deepEqual(sent, [{ type: 'disconnect', username: 'maria' }]);
        await later.close();
      });

    it('logs no errors to the browser console', () => {
      assert.deepEqual(walter.record.consoleErrors, []);
      assert.deepEqual(maria.record.consoleErrors, []);
    });

    it('says so when the server goes away and offers to reconnect, without a pop-up', async () => {
      const { page, record } = walter;
      await stopServer(server);
      await page.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
      assert.equal(await page.textContent('#connect'), 'Reconnect');
      assert.equal(await page.isEnabled('#connect'), true);
      assert.equal(await focusedId(page), 'connect', 'focus is on the way back in');
      assert.equal(await page.isDisabled('#message'), true);
      assert.deepEqual(await page.evaluate(usersList), []);
      assert.match(await page.textContent('#server-error'), /Connection lost/);
      assert.deepEqual(record.dialogs, []);
    });

    it('reconnects and logs back in under the same name', async () => {
      const { page } = walter;
      secondServer = await start();
      await page.fill('#server', `${ws}://127.0.0.1:${secondServer.port}/`);
      await page.keyboard.press('Enter');
      await waitUntil(page, usersList, ['walter (you)'], "walter's users list");
      assert.equal(await page.textContent('#ws-status'), 'Connected');
      assert.equal(await page.textContent('#server-error'), '');
      assert.equal(await focusedId(page), 'message');
    });
  });
}

story('http');
story('https');
