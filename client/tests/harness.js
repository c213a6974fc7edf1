// Test harness: starts one threadchat server and one headless Chromium, and
// records everything a page does that a test may want to assert on.
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');
const { chromium } = require('playwright-core');

// Debian's Chromium; playwright's own browser downloads cannot work here.
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
// The server logs this line at start-up (https with --tls-cert); port 0 lets
// the OS pick a free port.
const LISTENING = /https?:\/\/127\.0\.0\.1:(\d+)\//;
const SERVER_START_TIMEOUT_MS = 15_000;

const SERVER_BIN = process.env.THREADCHAT_BIN ||
  path.resolve(__dirname, '..', '..', 'target', 'debug', 'threadchat');

function requireBinary() {
  if (!fs.existsSync(SERVER_BIN)) {
    throw new Error(`threadchat binary not found at ${SERVER_BIN}: run \`cargo build\` first ` +
      'or set THREADCHAT_BIN');
  }
}

// The flags the binary knows, from its --help (read once).
let helpText = null;
function serverHas(flag) {
  requireBinary();
  if (helpText === null) helpText = execFileSync(SERVER_BIN, ['--help'], { encoding: 'utf8' });
  return helpText.includes(flag);
}

// Starts the server and resolves once it has said which port it listens on.
// Its history database, if it keeps one, goes into a temporary directory
// that stopServer deletes, never into the working directory. `args` are
// extra flags, e.g. ['--jwt-secret', 'S']; `port` 0 lets the OS choose.
function startServer(args = [], { port = 0 } = {}) {
  requireBinary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threadchat-e2e-'));
  const dbArgs = serverHas('--db') ? ['--db', path.join(dir, 'threadchat.db')] : [];
  const child = spawn(SERVER_BIN, ['--host', '127.0.0.1', '--port', String(port), ...dbArgs, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: dir,
  });
  let output = '';

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      fs.rmSync(dir, { recursive: true, force: true });
      reject(new Error(`server did not report its port within ${SERVER_START_TIMEOUT_MS} ms; ` +
        `output so far:\n${output}`));
    }, SERVER_START_TIMEOUT_MS);

    const onData = (chunk) => {
      output += chunk;
      const match = LISTENING.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, dir, port: Number(match[1]), output: () => output });
      }
    };
    // Keep draining both pipes for the whole run, or a chatty server would
    // block once the pipe buffer fills.
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
      reject(new Error(`server exited early (code ${code}, signal ${signal}); output:\n${output}`));
    });
  });
}

// Stops the server we started, by its own handle (never by name), and
// deletes its temporary directory.
function stopServer(server) {
  if (!server) return Promise.resolve();
  const cleanUp = () => fs.rmSync(server.dir, { recursive: true, force: true });
  if (server.child.exitCode !== null || server.child.signalCode !== null) {
    cleanUp();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    server.child.once('exit', () => { cleanUp(); resolve(); });
    server.child.kill('SIGTERM');
    // A server that ignores SIGTERM is killed outright rather than hanging the run.
    setTimeout(() => server.child.kill('SIGKILL'), 3_000).unref();
  });
}

// A test certificate authority and a leaf it signs for 127.0.0.1 and
// localhost, made with Debian's openssl in a temporary directory (never a
// committed key): `args` are the server's --tls-cert and --tls-key, `spki`
// what Chromium is told to trust (launchBrowser's `trustSpki`), and
// `remove()` deletes the directory. The same pair may serve several servers.
function makeCertificates() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threadchat-e2e-tls-'));
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const p256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...p256, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30',
    '-subj', '/CN=threadchat browser test CA');
  openssl('req', ...p256, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=localhost');
  fs.writeFileSync(path.join(dir, 'leaf.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
    '-CAcreateserial', '-out', 'leaf.crt', '-extfile', 'leaf.ext', '-days', '30');
  const read = (name) => fs.readFileSync(path.join(dir, name), 'utf8');
  fs.writeFileSync(path.join(dir, 'fullchain.pem'), read('leaf.crt') + read('ca.pem'));
  // --ignore-certificate-errors-spki-list takes the base64 of the SHA-256 of
  // a certificate's SubjectPublicKeyInfo (DER): here the leaf's.
  openssl('pkey', '-in', 'leaf.key', '-pubout', '-outform', 'DER', '-out', 'leaf.spki');
  const spki = openssl('dgst', '-sha256', '-binary', 'leaf.spki').toString('base64');
  assert.equal(spki, crypto.createHash('sha256')
    .update(fs.readFileSync(path.join(dir, 'leaf.spki'))).digest('base64'));
  return {
    args: ['--tls-cert', path.join(dir, 'fullchain.pem'), '--tls-key', path.join(dir, 'leaf.key')],
    spki,
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

// Launches Chromium. Playwright's launch() gives it a fresh temporary
// profile (--user-data-dir) and deletes it on close, so no earlier run's state
// can leak in. `trustSpki` (makeCertificates's `spki`) makes it accept that
// one key's certificate, as if the test CA were installed; no other
// certificate error is ignored.
async function launchBrowser({ trustSpki } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run client/tests/setup.sh (apt-get install chromium)`);
  }
  const trust = trustSpki ? [`--ignore-certificate-errors-spki-list=${trustSpki}`] : [];
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, ...trust],
    headless: true,
    timeout: 30_000,
  });
}

// A sign-in token from the server's own `token` subcommand.
function makeToken(args) {
  requireBinary();
  return execFileSync(SERVER_BIN, ['token', ...args], { encoding: 'utf8' }).trim();
}

// Opens a page in its own browser context (its own cookies and storage, like
// a separate person's browser) and records its console errors, uncaught
// exceptions and dialogs (alert/confirm/prompt). `contextOptions` go to
// browser.newContext (e.g. bypassCSP for the accessibility audit).
async function openPage(browser, url, viewport, contextOptions = {}) {
  const context = await browser.newContext({ viewport, ...contextOptions });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);

  const record = { consoleErrors: [], dialogs: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') record.consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => record.consoleErrors.push(`uncaught: ${err.message}`));
  page.on('dialog', (dialog) => {
    record.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });

  await page.goto(url);
  return { page, record };
}

module.exports = {
  startServer, stopServer, launchBrowser, openPage, makeToken, serverHas, makeCertificates,
};
