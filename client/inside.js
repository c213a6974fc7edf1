// The live view of threadchat's insides: asks /api/stats every half second
// while the page is visible, and writes the numbers into the diagram and the
// two tables.
//
// Rates (events, chats, deliveries and bytes per second, mean batch size)
// are computed here from two consecutive snapshots: the server sends
// counters and its own monotonic clock (`uptime_s`), and keeps no state per
// viewer. A hidden tab or a paused page asks nothing, so a server nobody
// watches does no work for this page.
//
// Text reaches the page only through textContent; no HTML is ever built
// from strings. The one live region (#status) changes only when the state
// does, so a screen reader is not told every number twice a second.
'use strict';

(() => {
  const REFRESH_MS = 500;
  const STATS_URL = '/api/stats';

  const $ = (id) => document.getElementById(id);

  let previous = null;   // the last snapshot, for rates
  let timer = null;
  let paused = false;
  let inFlight = false;

  // --- Formatting ------------------------------------------------------------

  const integer = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

  function bytes(n) {
    if (n < 1024) return `${integer.format(n)} B`;
    if (n < 1024 * 1024) return `${decimal.format(n / 1024)} KiB`;
    return `${decimal.format(n / (1024 * 1024))} MiB`;
  }

  function perSecond(value) {
    return value === null ? '–' : `${integer.format(value)}/s`;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
  }

  function percent(fraction) {
    return `${integer.format(Math.min(1, fraction) * 100)} %`;
  }

  // Writes text only when it changed, so unchanged numbers cost no layout.
  function setText(id, text) {
    const element = $(id);
    if (element.textContent !== text) element.textContent = text;
  }

  function setStatus(kind, text) {
    const status = $('status');
    if (status.textContent === text) return;
    status.textContent = text;
    status.className = `status status-${kind}`;
  }

  // --- Rates -----------------------------------------------------------------

  // Change per second of `pick(snapshot)` between the previous snapshot and
  // this one; null on the first sample or after a server restart.
  function rate(now, pick) {
    if (!previous) return null;
    const seconds = now.uptime_s - previous.uptime_s;
    const delta = pick(now) - pick(previous);
    if (seconds <= 0 || delta < 0) return null;
    return delta / seconds;
  }

  function meanBatch(now) {
    if (!previous) return null;
    const events = now.dispatcher.events_total - previous.dispatcher.events_total;
    const batches = now.dispatcher.batches_total - previous.dispatcher.batches_total;
    if (batches <= 0 || events < 0) return null;
    return events / batches;
  }

  // --- Drawing ---------------------------------------------------------------

  function fill(outbox, limits) {
    return Math.max(outbox.messages / Math.max(1, limits.messages),
      outbox.bytes / Math.max(1, limits.bytes));
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.append(td);
    return td;
  }

  function who(user, names) {
    if (user) return user;
    return names ? '(not logged in)' : 'hidden';
  }

  function drawOutboxes(snapshot) {
    const body = $('outboxes-body');
    const rows = snapshot.outboxes.map((outbox) => {
      const row = document.createElement('tr');
      const share = fill(outbox, snapshot.limits);
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = `conn ${outbox.conn}`;
      row.append(th);
      cell(row, who(outbox.user, snapshot.names_shown));
      cell(row, outbox.room);
      cell(row, integer.format(outbox.messages), 'num');
      cell(row, bytes(outbox.bytes), 'num');
      const bar = cell(row, '', 'bar');
      const meter = document.createElement('meter');
      meter.min = 0;
      meter.max = 1;
      meter.low = 0.5;
      meter.high = 0.8;
      meter.optimum = 0;
      meter.value = Math.min(1, share);
      meter.setAttribute('aria-label', `conn ${outbox.conn}: ${percent(share)} of its limit`);
      const label = document.createElement('span');
      label.textContent = percent(share);
      bar.append(meter, label);
      return row;
    });
    body.replaceChildren(...rows);
    $('outboxes').hidden = rows.length === 0;
    $('outboxes-empty').hidden = rows.length !== 0;
    setText('limit-messages', integer.format(snapshot.limits.messages));
    setText('limit-bytes', bytes(snapshot.limits.bytes));
    setText('names-note', snapshot.names_shown ? ''
      : 'User names are hidden: the server shows them only when run with --inside-names.');
    const top = snapshot.outboxes[0];
    setText('v-fullest', top ? percent(fill(top, snapshot.limits)) : 'all empty');
  }

  function drawDrops(snapshot) {
    const rows = snapshot.drops.map((drop) => {
      const row = document.createElement('tr');
      cell(row, clock(drop.at_ms));
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = `conn ${drop.conn}`;
      row.append(th);
      cell(row, who(drop.user, snapshot.names_shown));
      cell(row, drop.room);
      cell(row, drop.reason.replace(/_/g, ' '));
      return row;
    });
    $('drops-body').replaceChildren(...rows);
    $('drops').hidden = rows.length === 0;
    $('drops-empty').hidden = rows.length !== 0;
  }

  function draw(snapshot) {
    const d = snapshot.dispatcher;
    setText('v-connections', integer.format(snapshot.connections));
    setText('v-threads', snapshot.threads.process === null ? 'unknown'
      : integer.format(snapshot.threads.process));
    setText('v-readers', integer.format(snapshot.threads.readers));
    setText('v-writers', integer.format(snapshot.threads.writers));
    setText('v-queue', `${integer.format(d.queue)} of ${integer.format(d.queue_capacity)}`);
    const meter = $('queue-meter');
    meter.value = d.queue_capacity ? d.queue / d.queue_capacity : 0;
    setText('v-eps', perSecond(rate(snapshot, (s) => s.dispatcher.events_total)));
    const batch = meanBatch(snapshot);
    setText('v-batch', batch === null ? '–' : decimal.format(batch));
    setText('v-cps', perSecond(rate(snapshot, (s) => s.chats_total)));
    setText('v-users', `${integer.format(snapshot.logged_in)} in ${integer.format(snapshot.rooms)} `
      + (snapshot.rooms === 1 ? 'room' : 'rooms'));
    setText('v-heartbeat', `${integer.format(d.heartbeat_age_s * 1000)} ms`);
    setText('v-dps', perSecond(rate(snapshot, (s) => s.deliveries_total)));
    setText('v-drops', integer.format(snapshot.drops_total));
    const written = rate(snapshot, (s) => s.bytes_written_total);
    setText('v-bps', written === null ? '–' : `${bytes(written)}/s`);
    drawOutboxes(snapshot);
    drawDrops(snapshot);
  }

  // --- Polling ---------------------------------------------------------------

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const response = await fetch(STATS_URL, { cache: 'no-store' });
      if (!response.ok) {
        throw new Error(`${response.status}: ${(await response.text()).trim()}`);
      }
      const snapshot = await response.json();
      draw(snapshot);
      previous = snapshot;
      if (!paused) setStatus('connected', 'Live');
    } catch (err) {
      previous = null;
      setStatus('disconnected', `Server not answering (${err.message})`);
    } finally {
      inFlight = false;
    }
  }

  function running() {
    return !paused && document.visibilityState === 'visible';
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!running()) return;
    timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, REFRESH_MS);
  }

  function start() {
    refresh().then(schedule);
  }

  $('pause').addEventListener('click', () => {
    paused = !paused;
    const button = $('pause');
    button.setAttribute('aria-pressed', String(paused));
    button.textContent = paused ? 'Resume updates' : 'Pause updates';
    if (paused) {
      clearTimeout(timer);
      timer = null;
      previous = null;   // a rate across the pause would mislead
      setStatus('connecting', 'Paused');
    } else {
      start();
    }
  });

  // A hidden tab asks nothing; coming back, it starts afresh.
  document.addEventListener('visibilitychange', () => {
    if (running()) {
      previous = null;
      start();
    } else {
      clearTimeout(timer);
      timer = null;
    }
  });

  start();
})();
