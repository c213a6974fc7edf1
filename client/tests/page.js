// Reading and driving the chat page, shared by the browser tests.
// Each reader runs inside the page and returns plain data.
'use strict';

const assert = require('node:assert/strict');

// The users list as text, e.g. ["walter (you)", "maria"].
const usersList = () => [...document.querySelectorAll('#users-list li')].map((li) =>
  li.querySelector('.user-name').textContent + (li.querySelector('.you') ? ' (you)' : ''));

// Chat messages as "class|sender|text", e.g. "right|walter|hello".
const chatMessages = () => [...document.querySelectorAll('#chat .message')].map((m) => [
  m.classList.contains('right') ? 'right' : m.classList.contains('left') ? 'left' : '?',
  m.querySelector('.sender').textContent,
  m.querySelector('.text').textContent,
].join('|'));

// Just the texts of the chat messages, top to bottom.
const chatTexts = () => [...document.querySelectorAll('#chat .message .text')]
  .map((p) => p.textContent);

const lastMessage = () => {
  const all = document.querySelectorAll('#chat .message');
  return all.length ? all[all.length - 1].querySelector('.text').textContent : null;
};

const systemLines = () => [...document.querySelectorAll('#chat .system')].map((p) => p.textContent);

// The room list as "name|users", e.g. "algebra|2 users".
const roomsList = () => [...document.querySelectorAll('#rooms-list li')].map((li) =>
  `${li.querySelector('a').textContent}|${li.querySelector('.room-users').textContent}`);

// Waits until the reader returns `expected`; on timeout, fails showing what
// the page had instead. The check runs inside the page (Playwright re-runs it
// on every animation frame), so it is built here as a function: the page's
// Content-Security-Policy forbids evaluating strings there.
async function waitUntil(page, reader, expected, what, timeout = 10_000) {
  const matches = new Function('expected',
    `return JSON.stringify((${reader})()) === JSON.stringify(expected);`);
  try {
    await page.waitForFunction(matches, expected, { timeout });
  } catch (err) {
    if (!/Timeout/.test(err.message)) throw err;
    assert.deepEqual(await page.evaluate(reader), expected, `${what} never became as expected`);
  }
}

async function focusedId(page) {
  return page.evaluate(() => document.activeElement && document.activeElement.id);
}

// What has the focus, as "tag#id" or "a:text".
async function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    if (!el) return null;
    if (el.tagName === 'A') return `a:${el.textContent}`;
    return `${el.tagName.toLowerCase()}#${el.id}`;
  });
}

// Presses Tab until `target` (as `focused` describes it) has the focus, and
// fails if it is not reached within `max` presses: the control must be in
// the keyboard's tab order.
async function tabTo(page, target, max = 40) {
  const seen = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const now = await focused(page);
    if (now === target) return;
    seen.push(now);
  }
  assert.fail(`${target} was not reached with Tab; the focus went through ${seen.join(', ')}`);
}

async function connectByKeyboard(page) {
  assert.equal(await focusedId(page), 'server', 'the page starts in the server URL box');
  await page.keyboard.press('Enter');
  await page.locator('#ws-status', { hasText: 'Connected' }).waitFor();
}

async function connectByMouse(page) {
  await page.click('#connect');
  await page.locator('#ws-status', { hasText: 'Connected' }).waitFor();
}

// Connects and logs in under `name`, waiting until the server confirmed it.
async function join(page, name) {
  await connectByMouse(page);
  await page.fill('#name', name);
  await page.click('#set-name');
  await page.locator('#name-display', { hasText: `Signed in as ${name}` }).waitFor();
}

async function say(page, text) {
  await page.fill('#message', text);
  await page.keyboard.press('Enter');
}

module.exports = {
  usersList, chatMessages, chatTexts, lastMessage, systemLines, roomsList,
  waitUntil, focusedId, focused, tabTo, connectByKeyboard, connectByMouse, join, say,
};
