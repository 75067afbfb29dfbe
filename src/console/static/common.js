// Shared helpers of the console pages: JSON calls with the session's CSRF token, DOM building.
const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  if (res.status === 401) {
    location.href = '/console/login';
    throw new Error('signed out');
  }
  const text = await res.text();
  const json = text === '' ? {} : JSON.parse(text);
  if (!res.ok) throw new Error(json.error?.message ?? `HTTP ${res.status}`);
  return json;
}

/** el('td', {class: 'x'}, 'text', child...) */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}

export function fillRows(table, rows, empty) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el('tr', {}, el('td', { colspan: table.tHead.rows[0].cells.length }, empty)));
    return;
  }
  for (const cells of rows) body.append(el('tr', {}, ...cells.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : el('td', {}, c)))));
}

export function say(id, text, isError = false) {
  const p = document.getElementById(id);
  p.textContent = isError ? `Error: ${text}` : text;
  p.classList.toggle('error', isError);
}

export const when = (iso) => (iso === null || iso === undefined ? '—' : new Date(iso).toLocaleString());

/** A state word with a symbol, so it reads without colour. */
export function badge(state) {
  const sym = { completed: '✔', ok: '✔', running: '▶', requested: '…', retrying: '⟳', failed: '✖', quiet: '⚠', disabled: '⏸', enabled: '✔' }[state] ?? '•';
  return el('span', { class: `badge badge-${state}` }, `${sym} ${state}`);
}
