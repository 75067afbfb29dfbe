import { api, el, fillRows, say, when, badge } from './common.js';

const SVG = 'http://www.w3.org/2000/svg';

function chart(name, values, stepS) {
  const w = 360, h = 60;
  // The real peak in the text; the bars scale to it (to 1 while every value is 0).
  const peak = Math.max(0, ...values);
  const max = peak > 0 ? peak : 1;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  // Stretched to the box the style sheet gives it: the newest bar at the right edge.
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  const last = values.length > 0 ? values[values.length - 1] : 0;
  svg.setAttribute('aria-label', `${name}: events per second over the last hour, peak ${peak.toFixed(1)}, latest ${last.toFixed(1)}`);
  // One bar per 10 s step, the newest on the right.
  const bw = w / 360;
  values.forEach((v, i) => {
    const bh = Math.max(v > 0 ? 1 : 0, (h - 2) * (v / max));
    const r = document.createElementNS(SVG, 'rect');
    r.setAttribute('x', String(bw * (360 - values.length + i)));
    r.setAttribute('y', String(h - bh));
    r.setAttribute('width', String(Math.max(1, bw)));
    r.setAttribute('height', String(bh));
    r.setAttribute('fill', 'currentColor');
    svg.append(r);
  });
  const fig = el('figure', {}, svg, el('figcaption', {}, `events/s, last hour in ${stepS} s steps: peak ${peak.toFixed(1)}, latest ${last.toFixed(1)}`));
  return fig;
}

function senders(l) {
  if (l.senders.length === 0) return null;
  const t = el('table', { class: 'senders' }, el('caption', {}, `Senders to ${l.name}`), el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Address'), el('th', { scope: 'col' }, 'Events'), el('th', { scope: 'col' }, 'Last event'))), el('tbody'));
  for (const s of l.senders) t.tBodies[0].append(el('tr', {}, el('td', {}, s.address), el('td', {}, String(s.events)), el('td', {}, when(s.lastEventAt), ' ', s.quiet ? badge('quiet') : null)));
  return t;
}

async function refresh() {
  try {
    const o = await api('GET', '/console/api/overview');
    say('status', `cefd ${o.version} · up ${Math.floor(o.uptimeSeconds / 3600)} h ${Math.floor((o.uptimeSeconds % 3600) / 60)} min · decode workers: ${o.workers === 0 ? 'none (main thread)' : o.workers}${o.tailClients > 0 ? ` · live tail open (${o.tailClients})` : ''}`);
    const box = document.getElementById('listeners');
    box.replaceChildren(
      ...o.listeners.map((l) =>
        el(
          'article',
          { class: 'listener', 'data-listener': l.name },
          el('h3', {}, l.name),
          el('p', {}, `Events: `, el('strong', { class: 'events-total' }, String(l.eventsTotal)), ` · connections open: ${l.connectionsOpen} · last event: ${when(l.lastEventAt)} `, l.quiet ? badge('quiet') : null, l.quiet ? ` no events for more than ${o.quietAfterSeconds} s` : null),
          chart(l.name, l.perSecond, o.stepSeconds),
          senders(l),
        ),
      ),
    );
    if (o.listeners.length === 0) box.replaceChildren(el('p', {}, 'No listeners.'));
    fillRows(
      document.getElementById('outputs'),
      o.outputs.map((x) => [x.name, el('td', {}, badge(x.state)), String(x.sent), `${x.queued} / ${x.capacity}`, x.bufferFill === null ? '—' : `${Math.round(x.bufferFill * 100)} %`, x.lastError === null ? '—' : `${x.lastError} (${when(x.lastErrorAt)})`]),
      'No outputs.',
    );
    const rows = [];
    for (const l of o.listeners) {
      for (const [code, n] of Object.entries(l.parseErrors)) rows.push([`parse error (${l.name})`, code, String(n)]);
      for (const [code, n] of Object.entries(l.frameErrors)) rows.push([`frame error (${l.name})`, code, String(n)]);
    }
    for (const [code, n] of Object.entries(o.deadLetters)) rows.push(['dead letter', code, String(n)]);
    fillRows(document.getElementById('errors'), rows, 'None.');
  } catch (e) {
    say('status', e.message, true);
  }
}

refresh();
setInterval(refresh, 3000);
