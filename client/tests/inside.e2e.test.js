// End-to-end test of the live view (/inside): the real server, the real page
// in headless Chromium, and a small real load (a few WebSocket users
// chatting from another browser context). Checks that the numbers are live,
// that a drop shows with its reason, that names stay hidden by default, that
// Pause stops the polling, and that axe-core finds no WCAG 2.1 A/AA
// violation. Saves docs/inside.png.
//
// axe is injected as an inline script, which the page's Content-Security-
// Policy forbids, so the audited pages (and only those) run with bypassCSP.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startServer, stopServer, launchBrowser, openPage } = require('./harness');

const DESKTOP = { width: 1200, height: 1000 };
const PHONE = { width: 390, height: 844 };
const OUTPUT_DIR = path.join(__dirname, 'output');
const SCREENSHOT = path.join(__dirname, '..', '..', 'docs', 'inside.png');
const AXE_SOURCE = fs.readFileSync(
  path.join(__dirname, '..', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const LOAD_USERS = 4;
const CHAT_EVERY_MS = 100;        // 10 chats/s per user: half the rate limit
const LOAD_MAX_MS = 45_000;       // the load stops by itself after this, whatever happens
const XSS = '<img src=x onerror=alert(1)>';

let server;
let browser;
let origin;
let inside;   // { page, record }: the live view, as a person opens it
let load;     // { context, page }: the chatting users

// --- Helpers -------------------------------------------------------------------

// The number at the start of an element's text ("1,234/s" -> 1234), or NaN.
async function numberIn(page, selector) {
  const text = await page.textContent(selector);
  return Number.parseFloat(text.replace(/,/g, ''));
}

// Waits until `predicate(number in selector)` holds; on timeout, fails
// saying what the page showed.
async function waitForNumber(page, selector, predicate, what) {
  const deadline = Date.now() + 10_000;
  let last;
  while (Date.now() < deadline) {
    last = await page.textContent(selector);
    if (predicate(Number.parseFloat(last.replace(/,/g, '')))) return;
    await page.waitForTimeout(100);
  }
  assert.fail(`${what}: ${selector} still shows ${JSON.stringify(last)}`);
}

// Starts LOAD_USERS WebSocket users in a page of their own context (the chat
// page, only for its origin: Chromium lets a blank page open no socket to
// 127.0.0.1); resolves once all have logged in, then each chats every
// CHAT_EVERY_MS.
async function startLoad(port) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  await page.evaluate(({ url, users, every, maxMs }) => new Promise((resolve, reject) => {
    const state = { sockets: [], timers: [], closes: [] };
    window.load = state;
    let joined = 0;
    const fail = setTimeout(() => reject(new Error(`only ${joined} of ${users} logged in`)), 8000);
    for (let i = 0; i < users; i += 1) {
      const ws = new WebSocket(url);
      ws.onopen = () => ws.send(JSON.stringify({ type: 'login', username: `load-${i}` }));
      ws.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === 'login' && message.user_joined === `load-${i}`) {
          joined += 1;
          if (joined === users) {
            clearTimeout(fail);
            resolve();
          }
        }
      };
      ws.onclose = (event) => state.closes.push({ user: i, code: event.code });
      state.sockets.push(ws);
    }
  }).then(() => {
    window.load.sockets.forEach((ws, i) => {
      let n = 0;
      window.load.timers.push(setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) {
          n += 1;
          ws.send(JSON.stringify({ type: 'chat', text: `tick ${n} from load-${i}` }));
        }
      }, every));
    });
    // Bounded whatever the test does.
    setTimeout(() => window.load.timers.forEach(clearInterval), maxMs);
  }), { url: `ws://127.0.0.1:${port}/`, users: LOAD_USERS, every: CHAT_EVERY_MS, maxMs: LOAD_MAX_MS });
  return { context, page };
}

async function stopLoad() {
  if (!load) return;
  await load.page.evaluate(() => {
    window.load.timers.forEach(clearInterval);
    window.load.sockets.forEach((ws) => ws.close());
  }).catch(() => {});
  await load.context.close();
  load = null;
}

// Opens /inside in a context that lets axe's inline script in.
async function openAuditable(viewport) {
  const context = await browser.newContext({ viewport, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(`${origin}/inside`);
  await page.locator('#status', { hasText: 'Live' }).waitFor();
  return { context, page };
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
  assert.ok(result.passes.length > 10,
    `axe passed only ${result.passes.length} rules ${state}: did it run?`);
}

// Counts the page's requests for /api/stats while `during` runs.
async function statsRequestsDuring(page, during) {
  let count = 0;
  const onRequest = (request) => {
    if (new URL(request.url()).pathname === '/api/stats') count += 1;
  };
  page.on('request', onRequest);
  try {
    await during();
  } finally {
    page.off('request', onRequest);
  }
  return count;
}

// --- The story -----------------------------------------------------------------

describe('the live view at /inside', { timeout: 120_000 }, () => {
  before(async () => {
    server = await startServer();
    origin = `http://127.0.0.1:${server.port}`;
    browser = await launchBrowser();
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  });

  after(async () => {
    await stopLoad();
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('is served with a policy that forbids inline code, and says it is live', async () => {
    const response = await fetch(`${origin}/inside`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-security-policy'), /default-src 'self'/);
    const html = await response.text();
    assert.doesNotMatch(html, /<script>|<style|\sstyle=|\son[a-z]+=/i, 'no inline script or style');

    inside = await openPage(browser, `${origin}/inside`, DESKTOP);
    const { page } = inside;
    await page.locator('#status', { hasText: 'Live' }).waitFor();
    assert.equal(await page.textContent('#v-users'), '0 in 0 rooms');
    // A rate needs two samples; then nothing is delivered while idle.
    await page.locator('#v-dps', { hasText: '/s' }).waitFor();
    assert.equal(await page.textContent('#v-dps'), '0/s');
  });

  it('asks /api/stats about every half second, and never while paused', async () => {
    const { page } = inside;
    const running = await statsRequestsDuring(page, () => page.waitForTimeout(2000));
    assert.ok(running >= 3 && running <= 6, `${running} requests in 2 s`);

    await page.click('#pause');
    assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'true');
    await page.locator('#status', { hasText: 'Paused' }).waitFor();
    await page.waitForTimeout(300); // a request already in flight may finish
    const paused = await statsRequestsDuring(page, () => page.waitForTimeout(1500));
    assert.equal(paused, 0, 'a paused page asks nothing');

    await page.click('#pause');
    assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'false');
    await page.locator('#status', { hasText: 'Live' }).waitFor();
  });

  it('shows live numbers that follow a small load', async () => {
    const { page } = inside;
    load = await startLoad(server.port);

    await waitForNumber(page, '#v-users', (n) => n === LOAD_USERS, 'users logged in');
    await waitForNumber(page, '#v-writers', (n) => n >= LOAD_USERS, 'writers alive');
    await waitForNumber(page, '#v-readers', (n) => n >= LOAD_USERS, 'readers alive');
    // 4 users at 10 chats/s each: about 40 chats/s, each delivered to 4.
    await waitForNumber(page, '#v-cps', (n) => n >= 10, 'chats per second');
    await waitForNumber(page, '#v-dps', (n) => n >= 40, 'deliveries per second');
    await waitForNumber(page, '#v-eps', (n) => n >= 10, 'events per second');
    await waitForNumber(page, '#v-batch', (n) => n >= 1, 'mean batch');
    await waitForNumber(page, '#v-bps', (n) => n > 0, 'bytes written per second');
    assert.match(await page.textContent('#v-users'), /^4 in 1 room$/);
    assert.match(await page.textContent('#v-queue'), / of 16,384$/);

    // The numbers move: samples of the rates, half a second apart, differ.
    const samples = new Set();
    for (let i = 0; i < 8; i += 1) {
      samples.add([await page.textContent('#v-eps'), await page.textContent('#v-dps'),
        await page.textContent('#v-bps')].join(' '));
      await page.waitForTimeout(500);
    }
    assert.ok(samples.size > 1, `the numbers never changed: ${[...samples]}`);
  });

  it('lists a drop with its reason, and no user names unless the server allows them', async () => {
    const { page } = inside;
    assert.equal(await page.isVisible('#drops-empty'), true);
    // One load user sends a message over the 64 KiB limit: closed with 1009.
    await load.page.evaluate(() => window.load.sockets[0].send('x'.repeat(70 * 1024)));
    await page.locator('#drops-body tr').first().waitFor();
    const row = await page.$$eval('#drops-body tr:first-child > *', (cells) =>
      cells.map((c) => c.textContent));
    assert.equal(row.length, 5);
    assert.match(row[0], /^\d\d:\d\d:\d\d$/, 'a time');
    assert.match(row[1], /^conn \d+$/);
    assert.equal(row[2], 'hidden');
    assert.equal(row[4], 'size');
    await waitForNumber(page, '#v-drops', (n) => n === 1, 'drops since start');
    await waitForNumber(page, '#v-users', (n) => n === LOAD_USERS - 1, 'users after the drop');
    // Only that user was dropped. (Its browser may report 1006 rather than
    // 1009: the server closes with part of the message unread.)
    const closes = await load.page.evaluate(() => window.load.closes);
    assert.deepEqual(closes.map((c) => c.user), [0]);
    assert.doesNotMatch(await page.textContent('body'), /load-\d/, 'no user name anywhere');
    assert.match(await page.textContent('#names-note'), /--inside-names/);
  });

  it('saves a screenshot of the live view under load to docs/inside.png', async () => {
    const { page } = inside;
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(fs.statSync(SCREENSHOT).size > 20_000, 'the screenshot has content');
  });

  it('passes axe (WCAG 2.1 A and AA) under load, on a desktop and on a phone', async () => {
    for (const viewport of [DESKTOP, PHONE]) {
      const { context, page } = await openAuditable(viewport);
      try {
        await page.locator('#drops-body tr').first().waitFor();
        await waitForNumber(page, '#v-dps', (n) => n > 0, 'deliveries per second');
        await audit(page, `at ${viewport.width} px under load`);
      } finally {
        await context.close();
      }
    }
  });

  it('draws the fullest outboxes as bars against the limits, names as plain text', async () => {
    // A real snapshot with outboxes put in, as the server sends them when
    // clients fall behind (tests/metrics.rs checks that it does).
    const { context, page } = await openAuditable(DESKTOP);
    try {
      await page.route('**/api/stats', async (route) => {
        const real = await (await route.fetch()).json();
        real.names_shown = true;
        real.outboxes = [
          { conn: 12, user: XSS, room: 'lobby', messages: 3900, bytes: 1_000_000 },
          { conn: 7, user: 'maria', room: 'lobby', messages: 40, bytes: 3_000_000 },
          { conn: 31, user: null, room: 'lobby', messages: 2, bytes: 4096 },
        ];
        await route.fulfill({ json: real });
      });
      await page.locator('#outboxes-body tr').nth(2).waitFor();
      const rows = await page.$$eval('#outboxes-body tr', (trs) => trs.map((tr) => ({
        cells: [...tr.children].map((c) => c.textContent),
        fill: tr.querySelector('meter').value,
      })));
      assert.deepEqual(rows.map((r) => r.cells[0]), ['conn 12', 'conn 7', 'conn 31']);
      assert.deepEqual(rows.map((r) => r.cells[1]), [XSS, 'maria', '(not logged in)']);
      // 3900 of 4096 messages; 3 MB of 4 MiB; 4 KiB of 4 MiB.
      assert.ok(Math.abs(rows[0].fill - 3900 / 4096) < 1e-6);
      assert.ok(Math.abs(rows[1].fill - 3_000_000 / 4_194_304) < 1e-6);
      assert.equal(rows[0].cells[5], '95 %');
      assert.equal(await page.textContent('#v-fullest'), '95 %');
      assert.equal(await page.isVisible('#outboxes-empty'), false);
      assert.equal(await page.$('#outboxes-body img'), null, 'a name is never markup');
      await audit(page, 'with outboxes listed');
    } finally {
      await page.unrouteAll({ behavior: 'ignoreErrors' });
      await context.close();
    }
  });

  it('returns to zero when the load stops, without a console error', async () => {
    const { page, record } = inside;
    await stopLoad();
    await waitForNumber(page, '#v-users', (n) => n === 0, 'users after the load');
    await waitForNumber(page, '#v-dps', (n) => n === 0, 'deliveries per second after the load');
    await waitForNumber(page, '#v-writers', (n) => n === 0, 'writers after the load');
    assert.deepEqual(record.consoleErrors, []);
    assert.deepEqual(record.dialogs, []);
  });
});
