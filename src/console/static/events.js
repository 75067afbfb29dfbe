import { api, el, say } from './common.js';

const tbody = document.querySelector('#events tbody');
const pauseBtn = document.getElementById('pause');
const detail = document.getElementById('detail');
const MAX_ROWS = 200;
let source;
let paused = false;
let held = [];
let heldCount = 0;
let current;
let encoding = 'native';

function row(ev) {
  const link = el('a', { href: `#${ev.id}`, 'data-id': ev.id, onclick: (e) => { e.preventDefault(); show(ev.id); } }, new Date(ev.receivedAt).toLocaleTimeString());
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

async function start(filter) {
  source?.close();
  tbody.replaceChildren();
  // The filter is checked first: an EventSource cannot read an error answer.
  try {
    await api('GET', `/console/api/events?limit=1&filter=${encodeURIComponent(filter)}`);
  } catch (e) {
    say('tail-status', e.message, true);
    return;
  }
  source = new EventSource(`/console/api/events/stream?filter=${encodeURIComponent(filter)}`);
  source.addEventListener('open', () => say('tail-status', filter === '' ? 'Live: every event.' : `Live: events where ${filter}`));
  source.addEventListener('error', () => say('tail-status', 'The live tail is reconnecting…', true));
  // The daemon skips events while this page reads too slowly, and says how many.
  source.addEventListener('dropped', (m) => say('tail-status', `${JSON.parse(m.data).dropped} events skipped: this page read them too slowly.`, true));
  source.addEventListener('event', (m) => {
    const ev = JSON.parse(m.data);
    if (!paused) return add(ev);
    // Only the newest MAX_ROWS can show on Resume: keep no more (a page left paused for
    // hours would otherwise hold every event of those hours).
    held.push(ev);
    if (held.length > MAX_ROWS) held.shift();
    heldCount++;
    // Paused with the button (a search's result count stays on show otherwise).
    if (pauseBtn.dataset.by === 'button') say('tail-status', `Paused: ${heldCount} new events held.`);
  });
}

document.getElementById('tail-form').addEventListener('submit', (e) => {
  e.preventDefault();
  start(document.getElementById('filter').value.trim());
});

pauseBtn.addEventListener('click', () => {
  paused = !paused;
  pauseBtn.textContent = paused ? 'Resume' : 'Pause';
  pauseBtn.setAttribute('aria-pressed', String(paused));
  pauseBtn.dataset.by = 'button';
  let msg = 'Paused: new events are held.';
  if (!paused) {
    for (const ev of held) add(ev);
    msg = heldCount > held.length ? `Live. ${heldCount} events came while paused; the newest ${held.length} are shown.` : 'Live.';
  }
  held = [];
  heldCount = 0;
  say('tail-status', msg);
});

document.getElementById('search-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = document.getElementById('search-text').value;
  const filter = document.getElementById('filter').value.trim();
  try {
    const r = await api('GET', `/console/api/events?limit=200&text=${encodeURIComponent(text)}&filter=${encodeURIComponent(filter)}`);
    paused = true;
    pauseBtn.dataset.by = 'search';
    pauseBtn.textContent = 'Resume';
    pauseBtn.setAttribute('aria-pressed', 'true');
    tbody.replaceChildren(...r.events.map(row));
    say('tail-status', `${r.events.length} events in memory match (of the last ${r.inMemory}); the live tail is paused.`);
  } catch (err) {
    say('tail-status', err.message, true);
  }
});

start('');
