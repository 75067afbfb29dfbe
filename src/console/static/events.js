import { api, el, say } from './common.js';

const tbody = document.querySelector('#events tbody');
const pauseBtn = document.getElementById('pause');
const retryBtn = document.getElementById('tail-retry');
const detail = document.getElementById('detail');
const MAX_ROWS = 200;
/** How long "N events skipped" stays before the status says the tail is live again. */
const SKIPPED_SHOWN_MS = 10_000;
let source;
let paused = false;
let held = [];
let heldCount = 0;
let current;
let encoding = 'native';
let filterNow = '';
/** Counts status lines: a timer restores the live line only if nothing was said since. */
let said = 0;

function status(text, isError = false) {
  said++;
  say('tail-status', text, isError);
}

const liveText = () => (filterNow === '' ? 'Live: every event.' : `Live: events where ${filterNow}`);

/** The time, with the date when it is not today. */
function received(iso) {
  const d = new Date(iso);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

function row(ev) {
  const link = el('a', { href: `#${ev.id}`, 'data-id': ev.id, onclick: (e) => { e.preventDefault(); show(ev.id); } }, received(ev.receivedAt));
  return el('tr', { 'data-id': ev.id }, el('td', {}, link), el('td', {}, ev.listener), el('td', {}, ev.eventClassId ?? '—'), el('td', {}, ev.name ?? '—'), el('td', {}, ev.host ?? '—'));
}

function add(ev) {
  tbody.prepend(row(ev));
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
}

async function show(id) {
  try {
    current = (await api('GET', `/console/api/events/${encodeURIComponent(id)}`)).event;
    render();
  } catch (e) {
    detail.textContent = e.message;
  }
}

function render() {
  for (const b of document.querySelectorAll('#enc-tabs button')) b.setAttribute('aria-selected', String(b.dataset.enc === encoding));
  if (current !== undefined) detail.textContent = current.encodings[encoding];
}

for (const b of document.querySelectorAll('#enc-tabs button')) {
  b.addEventListener('click', () => {
    encoding = b.dataset.enc;
    render();
  });
}

function setPaused(on, by) {
  paused = on;
  pauseBtn.textContent = on ? 'Resume' : 'Pause';
  pauseBtn.setAttribute('aria-pressed', String(on));
  if (by === undefined) delete pauseBtn.dataset.by;
  else pauseBtn.dataset.by = by;
}

/**
 * The EventSource gave up (the daemon refused it: 401 once the session ended, 503 with too
 * many tails, ...). A signed-out page goes to sign-in (api() does that on 401); otherwise
 * the page says the tail stopped and offers Retry.
 */
async function stopped(es) {
  try {
    await api('GET', '/console/api/overview');
  } catch (e) {
    if (e.message === 'signed out') return;
  }
  if (source !== es) return;
  status('Live tail stopped: the daemon closed it. Retry to open it again.', true);
  retryBtn.hidden = false;
}

/** A new tail with `filter`: the table, the held events and the pause start over. */
async function start(filter) {
  source?.close();
  source = undefined;
  retryBtn.hidden = true;
  tbody.replaceChildren();
  held = [];
  heldCount = 0;
  setPaused(false);
  // The filter is checked first: an EventSource cannot read an error answer.
  try {
    await api('GET', `/console/api/events?limit=1&filter=${encodeURIComponent(filter)}`);
  } catch (e) {
    status(e.message, true);
    return;
  }
  filterNow = filter;
  const es = new EventSource(`/console/api/events/stream?filter=${encodeURIComponent(filter)}`);
  source = es;
  es.addEventListener('open', () => {
    if (source === es && !paused) status(liveText());
  });
  es.addEventListener('error', () => {
    if (source !== es) return;
    if (es.readyState === EventSource.CLOSED) void stopped(es);
    else status('The live tail is reconnecting…', true);
  });
  // The daemon skips events while this page reads too slowly, and says how many; the
  // status says it for a while, then that the tail is live again.
  es.addEventListener('dropped', (m) => {
    status(`${JSON.parse(m.data).dropped} events skipped: this page read them too slowly.`, true);
    const mine = said;
    setTimeout(() => {
      if (said === mine && source === es && !paused) status(liveText());
    }, SKIPPED_SHOWN_MS);
  });
  es.addEventListener('event', (m) => {
    const ev = JSON.parse(m.data);
    if (!paused) return add(ev);
    // Only the newest MAX_ROWS can show on Resume: keep no more (a page left paused for
    // hours would otherwise hold every event of those hours).
    held.push(ev);
    if (held.length > MAX_ROWS) held.shift();
    heldCount++;
    // Paused with the button (a search's result count stays on show otherwise).
    if (pauseBtn.dataset.by === 'button') status(`Paused: ${heldCount} new events held.`);
  });
}

document.getElementById('tail-form').addEventListener('submit', (e) => {
  e.preventDefault();
  start(document.getElementById('filter').value.trim());
});

retryBtn.addEventListener('click', () => start(filterNow));

pauseBtn.addEventListener('click', () => {
  const fromSearch = pauseBtn.dataset.by === 'search';
  setPaused(!paused, 'button');
  let msg = 'Paused: new events are held.';
  if (!paused) {
    // The table shows search results: the live tail starts again from an empty table.
    if (fromSearch) tbody.replaceChildren();
    for (const ev of held) add(ev);
    msg = heldCount > held.length ? `Live. ${heldCount} events came while paused; the newest ${held.length} are shown.` : 'Live.';
  }
  held = [];
  heldCount = 0;
  status(msg);
});

document.getElementById('search-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = document.getElementById('search-text').value;
  const filter = document.getElementById('filter').value.trim();
  try {
    const r = await api('GET', `/console/api/events?limit=200&text=${encodeURIComponent(text)}&filter=${encodeURIComponent(filter)}`);
    setPaused(true, 'search');
    tbody.replaceChildren(...r.events.map(row));
    status(`${r.events.length} events in memory match (of the last ${r.inMemory}); the live tail is paused.`);
  } catch (err) {
    status(err.message, true);
  }
});

start('');
