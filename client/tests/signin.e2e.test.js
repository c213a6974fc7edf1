// Sign-in in the browser, against a server started with --jwt-secret: a link
// carrying #token= signs its reader in under the token's `sub`, and the token
// leaves the address bar at once and never travels in a request URL; a token
// can be pasted into the field instead; a refused token is explained next to
// that field; the token follows the tab to another room; a fresh token
// extends a session, and an expired one is explained with the way back in.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, stopServer, launchBrowser, openPage, makeToken } = require('./harness');
const { waitUntil, usersList, focusedId, connectByKeyboard } = require('./page');

const DESKTOP = { width: 1100, height: 760 };
const SECRET = 'signin-test-secret-of-at-least-32-bytes';
// A token that runs out during a test, yet not before the page has signed in
// with it (exp is in whole seconds, so it lasts between 3 and 4 s).
const SHORT_TTL = '4s';
// The renewal test's first token: its fresh one must reach the server
// before this runs out, after a page load, a sign-in and a token minted by
// the binary, which on a loaded machine took more than SHORT_TTL once.
const RENEWED_TTL = '10s';

let server;
let browser;
let origin;
let walter;
let walterToken;
const requested = [];   // every URL any page asked for
const sentFrames = [];  // every frame walter's page sent
const opened = [];

async function open(url) {
  const page = await openPage(browser, 'about:blank', DESKTOP);
  page.page.on('request', (r) => requested.push(r.url()));
  await page.page.goto(url);
  opened.push(page);
  return page;
}

describe('sign-in with tokens in a browser', { timeout: 90_000 }, () => {
  before(async () => {
    // No clock-skew allowance, so a token of a few seconds expires on time.
    server = await startServer(['--jwt-secret', SECRET, '--jwt-leeway', '0']);
    origin = `http://127.0.0.1:${server.port}`;
    browser = await launchBrowser();
    walterToken = makeToken(['--jwt-secret', SECRET, '--user', 'walter', '--ttl', '1h']);
    assert.match(walterToken, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the token command printed a JWT');
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('takes the token from a #token= link, then removes it from the address bar', async () => {
    walter = await open(`${origin}/r/algebra#token=${walterToken}`);
    const { page } = walter;
    page.on('websocket', (ws) => ws.on('framesent', (f) => sentFrames.push(JSON.parse(f.payload))));
    assert.equal(page.url(), `${origin}/r/algebra`, 'no token left in location.href');
    assert.equal(await page.evaluate(() => location.href.includes('token')), false);
  });

  it("shows the token's name before connecting, and the token step instead of the name step",
    async () => {
      const { page } = walter;
      await page.locator('#token-form').waitFor({ state: 'visible' });
      assert.equal(await page.isHidden('#name-form'), true);
      assert.equal(await page.textContent('#name-display'), 'Will sign in as walter');
    });

  it('connecting signs in with the token: the name shown is its sub', async () => {
    const { page } = walter;
    await connectByKeyboard(page);
    await page.locator('#name-display', { hasText: 'Signed in as walter' }).waitFor();
    await waitUntil(page, usersList, ['walter (you)'], "walter's users");
    assert.equal(await focusedId(page), 'message');
    const login = sentFrames.find((m) => m.type === 'login');
    assert.deepEqual(login, { type: 'login', token: walterToken, presence: 'changes' },
      'the login carries the token and no username');
  });

  it('refuses a bad token next to the token field', async () => {
    const { page } = await open(`${origin}/r/algebra`);
    await page.locator('#token-form').waitFor({ state: 'visible' });
    assert.equal(await page.textContent('#name-display'), 'Not signed in');
    await page.click('#connect');
    await page.locator('#ws-status', { hasText: 'Connected' }).waitFor();
    assert.equal(await focusedId(page), 'token', 'without a token, the page asks for one');
    await page.fill('#token', `${walterToken.slice(0, -4)}AAAA`);   // signature broken
    await page.keyboard.press('Enter');
    const error = page.locator('#token-form #token-error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.textContent(), /^Authentication failed/);
    assert.equal(await page.getAttribute('#token', 'aria-invalid'), 'true');
    assert.equal(await focusedId(page), 'token');
    assert.equal(await page.isDisabled('#message'), true);
    assert.deepEqual(await page.evaluate(usersList), []);
  });

  it('signs in with a token pasted into the field', async () => {
    const { page } = opened.at(-1);
    const mariaToken = makeToken(['--jwt-secret', SECRET, '--user', 'maria', '--ttl', '1h']);
    await page.fill('#token', mariaToken);
    await page.click('#sign-in');
    await page.locator('#name-display', { hasText: 'Signed in as maria' }).waitFor();
    assert.equal(await page.textContent('#token-error'), '', 'the old error is gone');
    assert.equal(await page.getAttribute('#token', 'aria-invalid'), null);
    await waitUntil(page, usersList, ['walter', 'maria (you)'], "maria's users");
    await waitUntil(walter.page, usersList, ['walter (you)', 'maria'], "walter's users");
  });

  it('keeps the token when the tab goes to another room', async () => {
    const { page } = walter;
    await page.fill('#room-input', 'physics');
    await Promise.all([page.waitForURL(`${origin}/r/physics`), page.press('#room-input', 'Enter')]);
    assert.equal(page.url().includes('token'), false);
    await page.locator('#name-display', { hasText: 'Will sign in as walter' }).waitFor();
    await page.click('#connect');
    await page.locator('#name-display', { hasText: 'Signed in as walter' }).waitFor();
    await waitUntil(page, usersList, ['walter (you)'], "walter's users in physics");
  });

  it('a fresh token extends the session, with no second join', async () => {
    const short = makeToken(['--jwt-secret', SECRET, '--user', 'laura', '--ttl', RENEWED_TTL]);
    const laura = await open(`${origin}/r/algebra#token=${short}`);
    const { page } = laura;
    await page.locator('#token-form').waitFor({ state: 'visible' });
    await page.click('#connect');
    await page.locator('#name-display', { hasText: 'Signed in as laura' }).waitFor();
    assert.equal(await page.textContent('#sign-in'), 'Renew');
    const maria = opened[1].page;
    await waitUntil(maria, usersList, ['maria (you)', 'laura'], "maria's users");

    const fresh = makeToken(['--jwt-secret', SECRET, '--user', 'laura', '--ttl', '1h']);
    await page.fill('#token', fresh);
    await page.press('#token', 'Enter');
    // Past the first token's end: the session goes on.
    const expiry = JSON.parse(Buffer.from(short.split('.')[1], 'base64url')).exp * 1000;
    await page.waitForTimeout(Math.max(0, expiry - Date.now()) + 1_500);
    assert.equal(await page.textContent('#ws-status'), 'Connected');
    assert.equal(await page.textContent('#token-error'), '');
    const joins = await maria.evaluate(() => [...document.querySelectorAll('#chat .system')]
      .map((p) => p.textContent).filter((t) => t === 'laura joined'));
    assert.deepEqual(joins, ['laura joined'], 'renewing is not joining again');
    await page.close();
  });

  it('says when the session expired, next to the token field, and takes a fresh one', async () => {
    const short = makeToken(['--jwt-secret', SECRET, '--user', 'tom', '--ttl', SHORT_TTL]);
    const tom = await open(`${origin}/r/algebra#token=${short}`);
    const { page } = tom;
    await page.locator('#token-form').waitFor({ state: 'visible' });
    await page.click('#connect');
    await page.locator('#name-display', { hasText: 'Signed in as tom' }).waitFor();

    await page.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
    const error = page.locator('#token-form #token-error');
    assert.match(await error.textContent(), /^Token expired/);
    assert.equal(await page.getAttribute('#token', 'aria-invalid'), 'true');
    assert.equal(await focusedId(page), 'token', 'focus is on the way back in');
    assert.equal(await page.isDisabled('#token'), false);

    const fresh = makeToken(['--jwt-secret', SECRET, '--user', 'tom', '--ttl', '1h']);
    await page.fill('#token', fresh);
    await page.keyboard.press('Enter');
    await page.locator('#name-display', { hasText: 'Signed in as tom' }).waitFor();
    assert.equal(await page.textContent('#ws-status'), 'Connected');
    assert.equal(await page.textContent('#token-error'), '');
    await waitUntil(page, usersList, ['maria', 'tom (you)'], "tom's users");
  });

  it('never put a token in a request URL', () => {
    assert.ok(requested.length > 5, 'requests were recorded');
    const leaks = requested.filter((u) => u.includes(walterToken.split('.')[2]) ||
      /token=/.test(u));
    assert.deepEqual(leaks, []);
  });

  it('logs no errors to the browser console', () => {
    for (const { record } of opened) assert.deepEqual(record.consoleErrors, []);
  });
});
