// Accessibility audit: axe-core, injected into the real page, checks every
// state a user meets against WCAG 2.0/2.1 A and AA: before connecting,
// connected, in a room with messages and history, with errors showing, with
// the copy-link fallback open, at phone width, and the sign-in step of a
// server that wants tokens. Every state must have zero violations; a failure
// prints each violation with the elements it found.
//
// axe is injected as an inline script, which the page's Content-Security-
// Policy forbids, so these pages (and only these) run with bypassCSP; the
// other test files keep the policy on.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startServer, stopServer, launchBrowser, openPage, makeToken } = require('./harness');
const { waitUntil, join, say, chatTexts, usersList } = require('./page');

const DESKTOP = { width: 1100, height: 760 };
const PHONE = { width: 390, height: 844 };
const AXE_SOURCE = fs.readFileSync(
  path.join(__dirname, '..', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const SECRET = 'a11y-test-secret-of-at-least-32-bytes';

let server;
let browser;
let origin;
let walter;   // the first user of room algebra
const pages = [];

async function open(url, viewport = DESKTOP) {
  const opened = await openPage(browser, url, viewport, { bypassCSP: true });
  pages.push(opened);
  return opened;
}

// Runs axe on the page as it is now; fails listing every violation.
async function audit(page, state) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.addScriptTag({ content: AXE_SOURCE });
  }
  const result = await page.evaluate((tags) => window.axe.run(document, {
    runOnly: { type: 'tag', values: tags },
    resultTypes: ['violations'],
  }), WCAG_TAGS);
  const report = result.violations.map((v) => [
    `${v.id} (${v.impact}): ${v.help}`,
    ...v.nodes.map((n) => `    at ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' / ')}`),
  ].join('\n'));
  assert.equal(report.length, 0,
    `axe found ${report.length} WCAG violation(s) ${state}:\n${report.join('\n')}`);
  // The audit really looked: many rules found elements to check and passed.
  assert.ok(result.passes.length > 10,
    `axe passed only ${result.passes.length} rules ${state}: did it run?`);
}

describe('accessibility (axe-core, WCAG 2.1 A and AA)', { timeout: 120_000 }, () => {
  before(async () => {
    server = await startServer();
    origin = `http://127.0.0.1:${server.port}`;
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('finds violations when there are some (the audit can fail)', async () => {
    const { page } = await open(`${origin}/r/algebra`);
    await page.evaluate(() => {
      // An unlabeled input and a low-contrast line, added on purpose.
      const input = document.createElement('input');
      document.body.append(input);
      const faint = document.createElement('p');
      faint.textContent = 'hard to read';
      faint.style.color = '#ddd';
      document.body.append(faint);
    });
    await assert.rejects(audit(page, 'on a page broken on purpose'), /label|color-contrast/);
    await page.close();
  });

  it('before connecting', async () => {
    const { page } = await open(`${origin}/r/algebra`);
    await audit(page, 'before connecting');
  });

  it('connected, with a refused name showing its error', async () => {
    walter = await open(`${origin}/r/algebra`);
    await join(walter.page, 'walter');
    const { page } = await open(`${origin}/r/algebra`);
    await page.click('#connect');
    await page.locator('#ws-status', { hasText: 'Connected' }).waitFor();
    await audit(page, 'connected, before a name');
    await page.fill('#name', 'WALTER');
    await page.click('#set-name');
    await page.locator('#name-error').waitFor({ state: 'visible' });
    await audit(page, 'with the name refused');
  });

  it('in a room with messages, earlier ones shown as history', async () => {
    await say(walter.page, 'Hello, algebra.');
    await say(walter.page, 'Exercise 3.1 is <b>hard</b>.');
    await waitUntil(walter.page, chatTexts, ['Hello, algebra.', 'Exercise 3.1 is <b>hard</b>.'],
      "walter's chat");

    // maria comes later, so she sees those two as history.
    const { page } = await open(`${origin}/r/algebra`);
    await join(page, 'maria');
    await page.locator('#chat .divider').waitFor();
    await say(page, 'Hi walter!');
    await waitUntil(page, usersList, ['walter', 'maria (you)'], "maria's users");
    await waitUntil(page, chatTexts,
      ['Hello, algebra.', 'Exercise 3.1 is <b>hard</b>.', 'Hi walter!'], "maria's chat");
    await audit(page, 'in a room with history and messages');
    await audit(walter.page, 'for the one who sent them');

    await page.setViewportSize(PHONE);
    await audit(page, 'at phone width');
  });

  it('with the go-to-room error and the copy-link fallback showing', async () => {
    const { page } = await open(`${origin}/r/physics`);
    await page.fill('#room-input', 'no spaces please');
    await page.press('#room-input', 'Enter');
    await page.locator('#room-error').waitFor({ state: 'visible' });
    await page.evaluate(() => Object.defineProperty(Navigator.prototype, 'clipboard',
      { get: () => undefined, configurable: true }));
    await page.click('#copy-link');
    await page.locator('#copy-fallback').waitFor({ state: 'visible' });
    await audit(page, 'with a room error and the copy fallback');
  });

  it('the sign-in step of a server that wants tokens', async () => {
    const authServer = await startServer(['--jwt-secret', SECRET]);
    try {
      const authOrigin = `http://127.0.0.1:${authServer.port}`;
      const { page } = await open(`${authOrigin}/r/algebra`);
      await page.locator('#token-form').waitFor({ state: 'visible' });
      await page.click('#connect');
      await page.locator('#ws-status', { hasText: 'Connected' }).waitFor();
      await audit(page, 'at the token step');
      await page.fill('#token', 'not-a-token');
      await page.click('#sign-in');
      await page.locator('#token-error').waitFor({ state: 'visible' });
      await audit(page, 'with the token refused');

      const token = makeToken(['--jwt-secret', SECRET, '--user', 'walter', '--ttl', '1h']);
      await page.fill('#token', token);
      await page.click('#sign-in');
      await page.locator('#name-display', { hasText: 'Signed in as walter' }).waitFor();
      await audit(page, 'signed in with a token');
    } finally {
      await stopServer(authServer);
    }
  });

  it('logs no errors to the browser console', () => {
    for (const { record } of pages) assert.deepEqual(record.consoleErrors, []);
  });
});
