// Moderation in the browser, against a server that signs in with tokens: a
// teacher whose token says "moderator" and two students in one room, each in
// their own browser context, driving every control of moderation.js. A
// student sees no moderation control but Edit and Delete on their own
// messages; an edit reaches the others marked "edited"; the teacher's delete
// turns a message into "message deleted" on every page; a mute, lecture
// mode, a kick and a ban each reach the student with the server's own words,
// and the way back in (or not). The dialogs are driven by keyboard, and the
// page with the controls and a dialog open passes axe with zero violations.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, stopServer, launchBrowser, openPage, makeToken } = require('./harness');
const { waitUntil, usersList, chatTexts, systemLines, say, focused } = require('./page');
const { audit } = require('./axe');

const DESKTOP = { width: 1100, height: 760 };
const SECRET = 'moderation-page-test-secret-of-32-bytes';
const ROOM = 'physics';

let server;
let browser;
let origin;
let teacher;   // ms-chen, a moderator
let walter;    // a student
let maria;     // a student
const opened = [];

function token(user, role) {
  const args = ['--jwt-secret', SECRET, '--user', user, '--ttl', '1h'];
  return makeToken(role ? [...args, '--role', role] : args);
}

// Opens the room's page with `user`'s token and signs in.
async function signIn(user, role, contextOptions = {}) {
  const opening = await openPage(browser, `${origin}/r/${ROOM}#token=${token(user, role)}`,
    DESKTOP, contextOptions);
  const { page } = opening;
  await page.locator('#token-form').waitFor({ state: 'visible' });
  await page.click('#connect');
  await page.locator('#name-display', { hasText: `Signed in as ${user}` }).waitFor();
  opened.push(opening);
  return opening;
}

// The moderation buttons a page shows, as "where|labels": each message's
// ("message:<text>|Edit,Delete") and each user's ("user:<name>|Mute,Kick,Ban").
const controls = () => [
  ...[...document.querySelectorAll('#chat .message')].map((m) => ['message', m, '.text']),
  ...[...document.querySelectorAll('#users-list li')].map((li) => ['user', li, '.user-name']),
].map(([kind, el, label]) => {
  const buttons = [...el.querySelectorAll('.mod-actions button')]
    .map((b) => b.firstChild.textContent);
  return `${kind}:${el.querySelector(label).textContent}|${buttons.join(',')}`;
});

// What has the focus, by its text (the buttons on messages and users have no id).
const focusedText = () => document.activeElement && document.activeElement.textContent;

// Presses Enter on a button that has the keyboard's focus: the dialog opens.
async function pressButton(page, locator) {
  await locator.focus();
  await page.keyboard.press('Enter');
  await page.locator('#mod-dialog[open]').waitFor();
}

const message = (page, text) => page.locator('#chat .message', { hasText: text });
const user = (page, name) => page.locator(`#users-list li[data-name="${name}"]`);

describe('moderation in a browser', { timeout: 150_000 }, () => {
  before(async () => {
    server = await startServer(['--jwt-secret', SECRET]);
    origin = `http://127.0.0.1:${server.port}`;
    browser = await launchBrowser();
    teacher = await signIn('ms-chen', 'moderator');
    walter = await signIn('walter');
    maria = await signIn('maria');
    await waitUntil(teacher.page, usersList, ['ms-chen (you)', 'walter', 'maria'], "teacher's users");
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(server);
  });

  it('shows a student no moderation control but Edit and Delete on their own messages',
    async () => {
      await say(maria.page, 'hello from maria');
      await message(walter.page, 'hello from maria').waitFor();
      await say(walter.page, 'hello from walter');
      await waitUntil(walter.page, chatTexts, ['hello from maria', 'hello from walter'], 'walter');
      await waitUntil(walter.page, controls, [
        'message:hello from maria|',
        'message:hello from walter|Edit,Delete',
        'user:ms-chen|', 'user:walter|', 'user:maria|',
      ], "walter's controls");
      assert.equal(await walter.page.isHidden('#mod-tools'), true, 'no lecture switch');
    });

  it('shows the moderator Delete on every message, and Mute, Kick, Ban on everyone else',
    async () => {
      await waitUntil(teacher.page, controls, [
        'message:hello from maria|Delete',
        'message:hello from walter|Delete',
        'user:ms-chen|', 'user:walter|Mute,Kick,Ban', 'user:maria|Mute,Kick,Ban',
      ], "the teacher's controls");
      assert.equal(await teacher.page.isVisible('#lecture-switch'), true);
      // Each button says whom it is for to a screen reader.
      assert.equal(await user(teacher.page, 'walter').locator('button.mod-kick')
        .evaluate((b) => b.textContent), 'Kick walter');
    });

  it("edits the author's message by keyboard: the others see the new text, marked edited",
    async () => {
      const { page } = walter;
      await say(page, 'teh answer is 42');
      const edit = message(page, 'teh answer').locator('button.mod-edit');
      await pressButton(page, edit);
      assert.equal(await focused(page), 'textarea#mod-text', 'the text is ready to edit');
      assert.equal(await page.inputValue('#mod-text'), 'teh answer is 42');
      await page.keyboard.press('ControlOrMeta+a');
      await page.keyboard.type('the answer is 42');
      await page.keyboard.press('Tab');
      assert.equal(await focused(page), 'button#mod-confirm');
      await page.keyboard.press('Enter');
      for (const { page: p } of [maria, teacher, walter]) {
        const item = message(p, 'the answer is 42');
        await item.locator('.edited', { hasText: 'edited' }).waitFor();
      }
      assert.equal(await maria.page.locator('#chat .message', { hasText: 'teh' }).count(), 0);
      assert.equal(await page.isVisible('#mod-dialog'), false);
      assert.equal(await page.evaluate(focusedText), 'Edit your message',
        'the focus is back on the Edit button');
    });

  it('keeps an empty edit in the dialog, with the reason', async () => {
    const { page } = walter;
    await pressButton(page, message(page, 'the answer is 42').locator('button.mod-edit'));
    await page.fill('#mod-text', '   ');
    await page.click('#mod-confirm');
    assert.match(await page.textContent('#mod-error'), /Write something/);
    assert.equal(await page.getAttribute('#mod-text', 'aria-invalid'), 'true');
    await page.keyboard.press('Escape');
    await page.locator('#mod-dialog').waitFor({ state: 'hidden' });
    assert.equal(await message(maria.page, 'the answer is 42').count(), 1, 'nothing changed');
  });

  it("lets the moderator delete a student's message: everyone sees \"message deleted\"",
    async () => {
      await say(maria.page, 'buy cheap essays');
      const { page } = teacher;
      await pressButton(page, message(page, 'buy cheap essays').locator('button.mod-delete'));
      assert.equal(await page.textContent('#mod-title'), "Delete maria's message?");
      assert.equal(await page.textContent('#mod-quote'), 'buy cheap essays');
      await page.click('#mod-confirm');
      for (const { page: p } of [maria, walter, teacher]) {
        await waitUntil(p, chatTexts, ['hello from maria', 'hello from walter',
          'the answer is 42', 'message deleted'], 'the chat after the delete');
        assert.equal(await p.locator('#chat .message.deleted .mod-actions').count(), 0,
          'a deleted message offers nothing');
      }
    });

  it('lets an author delete their own message', async () => {
    const { page } = maria;
    await say(page, 'oops, wrong room');
    await pressButton(page, message(page, 'oops').locator('button.mod-delete'));
    assert.equal(await page.textContent('#mod-title'), 'Delete your message?');
    await page.click('#mod-confirm');
    await waitUntil(walter.page, () => document.querySelectorAll('#chat .message.deleted').length,
      2, 'deleted messages on walter\'s page');
  });

  it('mutes a student: told so, their chat refused with the reason, then unmuted', async () => {
    const { page } = teacher;
    await pressButton(page, user(page, 'walter').locator('button.mod-mute'));
    assert.equal(await page.textContent('#mod-title'), 'Mute walter?');
    assert.equal(await focused(page), 'select#mod-duration');
    await page.selectOption('#mod-duration', '600');
    await page.click('#mod-confirm');
    await walter.page.locator('#chat .system', { hasText: /^You are muted until .* \(by ms-chen\)\.$/ })
      .waitFor();
    await user(page, 'walter').locator('.muted-badge', { hasText: 'muted' }).waitFor();
    await user(page, 'walter').locator('button.mod-unmute').waitFor();

    await say(walter.page, 'let me speak');
    await walter.page.locator('#message-error', { hasText: /^You are muted: until / }).waitFor();
    assert.equal(await message(maria.page, 'let me speak').count(), 0);

    await user(page, 'walter').locator('button.mod-unmute').click();
    await walter.page.locator('#chat .system', { hasText: 'You may post again' }).waitFor();
    await say(walter.page, 'thank you');
    await message(maria.page, 'thank you').waitFor();
    await user(page, 'walter').locator('button.mod-mute').waitFor();
  });

  it('turns on lecture mode: students are told, and their chats refused', async () => {
    const { page } = teacher;
    await page.focus('#lecture-switch');
    await page.keyboard.press('Space');
    for (const { page: p } of [walter, maria, teacher]) {
      await p.locator('#room-mode', { hasText: 'Lecture mode: only moderators may post.' })
        .waitFor();
    }
    await walter.page.locator('#chat .system',
      { hasText: 'ms-chen turned on lecture mode: only moderators may post.' }).waitFor();
    assert.equal(await page.isChecked('#lecture-switch'), true);
    assert.equal(await walter.page.getAttribute('#room-mode', 'role'), 'status',
      'the mode is announced politely');

    await say(walter.page, 'a question');
    await walter.page.locator('#message-error', { hasText: /^Lecture mode: / }).waitFor();
    await say(page, 'today: optics');
    await message(walter.page, 'today: optics').waitFor();
    assert.equal(await message(maria.page, 'a question').count(), 0);
  });

  it('tells someone who joins during lecture mode', async () => {
    const laura = await signIn('laura');
    await laura.page.locator('#room-mode', { hasText: 'Lecture mode' }).waitFor();
    await laura.page.close();
  });

  it('turns lecture mode off: students post again', async () => {
    const { page } = teacher;
    await page.click('#lecture-switch');
    await walter.page.locator('#chat .system', { hasText: 'ms-chen ended lecture mode' }).waitFor();
    assert.equal(await walter.page.textContent('#room-mode'), '');
    await say(walter.page, 'now a question');
    await message(maria.page, 'now a question').waitFor();
  });

  it('passes axe with the controls shown and a dialog open', async () => {
    // axe is injected inline, which the policy forbids: this page alone
    // bypasses it (the others keep it, and log no violation: see the end).
    const auditor = await signIn('mr-park', 'moderator', { bypassCSP: true });
    const { page } = auditor;
    await waitUntil(page, () => document.querySelectorAll('#users-list .mod-actions').length, 3,
      'the moderator sees controls on three users');
    await say(page, 'from the auditor');
    await message(page, 'from the auditor').locator('button.mod-edit').waitFor();
    await audit(page, 'with moderation controls');
    await pressButton(page, user(page, 'maria').locator('button.mod-ban'));
    await audit(page, 'with the ban dialog open');
    await page.keyboard.press('Escape');
    await page.locator('#mod-dialog').waitFor({ state: 'hidden' });
    assert.equal(await page.evaluate(focusedText), 'Ban maria', 'back on the Ban button');
    await page.click('#lecture-switch');
    await page.locator('#room-mode', { hasText: 'Lecture mode' }).waitFor();
    await audit(page, 'in lecture mode');
    await page.click('#lecture-switch');
    await page.locator('#room-mode:empty').waitFor({ state: 'attached' });
    await page.close();
  });

  it('kicks a student: their page says they were removed, and they may come back', async () => {
    const { page } = teacher;
    await pressButton(page, user(page, 'maria').locator('button.mod-kick'));
    assert.equal(await focused(page), 'input#mod-reason');
    await page.keyboard.type('off topic');
    await page.keyboard.press('Enter');
    const { page: mp } = maria;
    await mp.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
    await mp.locator('#chat .system',
      { hasText: 'You were removed from the room by ms-chen: off topic.' }).waitFor();
    assert.match(await mp.textContent('#server-error'), /^Removed from the room: off topic/);
    assert.equal(await mp.textContent('#connect'), 'Reconnect');
    assert.equal(await focused(mp), 'button#connect');
    assert.deepEqual((await mp.evaluate(systemLines)).filter((l) => l === 'Connection lost.'), [],
      'a kick is not a dropped line');
    await walter.page.locator('#chat .system',
      { hasText: 'maria was removed from the room by ms-chen: off topic.' }).waitFor();
    await waitUntil(walter.page, usersList, ['ms-chen', 'walter (you)'], "walter's users");

    await mp.click('#connect');
    await mp.locator('#name-display', { hasText: 'Signed in as maria' }).waitFor();
    await waitUntil(walter.page, usersList, ['ms-chen', 'walter (you)', 'maria'], 'maria back');
  });

  it('bans a student: removed, and their login refused with the reason', async () => {
    const { page } = teacher;
    await pressButton(page, user(page, 'maria').locator('button.mod-ban'));
    await page.selectOption('#mod-duration', '86400');
    await page.fill('#mod-reason', 'harassment');
    await page.click('#mod-confirm');
    const { page: mp } = maria;
    await mp.locator('#ws-status', { hasText: 'Disconnected' }).waitFor();
    assert.match(await mp.textContent('#server-error'),
      /^Banned from the room: banned until \S+Z: harassment$/);
    await walter.page.locator('#chat .system',
      { hasText: /^maria is banned from the room until .* by ms-chen: harassment\.$/ }).waitFor();

    await mp.click('#connect');
    const error = mp.locator('#token-error');
    await error.locator('strong', { hasText: 'You are banned' }).waitFor();
    assert.match(await error.textContent(),
      /^You are banned: banned from room physics until \S+Z: harassment$/);
    assert.equal(await mp.isDisabled('#message'), true);
  });

  it('lifts the ban from the moderator tools: the student may join again', async () => {
    const { page } = teacher;
    await page.fill('#unban-name', 'maria');
    await page.press('#unban-name', 'Enter');
    await walter.page.locator('#chat .system', { hasText: 'maria may join again' }).waitFor();
    await maria.page.click('#sign-in');
    await maria.page.locator('#name-display', { hasText: 'Signed in as maria' }).waitFor();
  });

  it("shows a refused command's reason politely", async () => {
    const { page } = teacher;
    // A kick of someone not in the room, as a page with a stale list could ask.
    await page.evaluate(() => window.threadchat.send({ type: 'kick', username: 'nobody' }));
    await page.locator('#mod-status', { hasText: /^Unknown user: / }).waitFor();
    assert.equal(await page.getAttribute('#mod-status', 'role'), 'status');
    assert.equal(await page.getAttribute('#chat', 'aria-live'), 'polite');
  });

  it('logs no errors to the browser console (the policy was kept)', () => {
    for (const { record } of opened) {
      assert.deepEqual(record.consoleErrors, []);
      assert.deepEqual(record.dialogs, []);
    }
  });
});

describe('moderation in a browser, with editing off (--edit-window 0)', { timeout: 60_000 }, () => {
  let quiet;
  let pages = [];

  before(async () => {
    quiet = await startServer(['--jwt-secret', SECRET, '--edit-window', '0']);
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    await stopServer(quiet);
  });

  it("offers an author no Edit or Delete; a moderator's Delete stays", async () => {
    origin = `http://127.0.0.1:${quiet.port}`;
    const chen = await signIn('ms-chen', 'moderator');
    const student = await signIn('walter');
    pages = [chen, student];
    await say(student.page, 'a fixed word');
    await waitUntil(student.page, controls, ['message:a fixed word|', 'user:ms-chen|', 'user:walter|'],
      "walter's controls with editing off");
    await waitUntil(chen.page, controls, ['message:a fixed word|Delete', 'user:ms-chen|',
      'user:walter|Mute,Kick,Ban'], "the teacher's controls with editing off");
    for (const { record } of pages) assert.deepEqual(record.consoleErrors, []);
  });
});
