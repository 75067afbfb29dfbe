import { api, el, fillRows, say, when, badge } from './common.js';

let assets = [];
let connections = [];
let tenants = [];

const err = (e) => say('ksc-status', e.message, true);

function actionButton(label, fn, name) {
  return el('button', { type: 'button', 'aria-label': `${label} ${name}`, onclick: fn }, label);
}

async function loadConnections() {
  const [t, c] = await Promise.all([api('GET', '/api/v1/tenants'), api('GET', '/api/v1/connections')]);
  connections = c.connections;
  tenants = t.tenants;
  fillRows(
    document.getElementById('tenants'),
    t.tenants.map((x) => [
      x.name,
      el('td', {}, badge(x.integrationEnabled ? 'enabled' : 'disabled'), ' ', actionButton(x.integrationEnabled ? 'Disable integration' : 'Enable integration', () => act(() => api('PATCH', `/api/v1/tenants/${encodeURIComponent(x.name)}`, { integrationEnabled: !x.integrationEnabled }), `Tenant ${x.name}: integration ${x.integrationEnabled ? 'disabled' : 'enabled'}.`), `of tenant ${x.name}`)),
      String(connections.filter((k) => k.tenant === x.name).length),
      el('td', { class: 'actions' }, x.name === 'default' ? '—' : actionButton('Delete', () => deleteTenant(x), `tenant ${x.name}`)),
    ]),
    'No tenants.',
  );
  fillRows(
    document.getElementById('connections'),
    connections.map((k) => [
      k.tenant,
      k.name,
      k.url,
      el('td', {}, badge(k.disabled ? 'disabled' : 'enabled')),
      k.secret?.set ? `set (${k.secret.source})` : 'not set',
      el(
        'td',
        { class: 'actions' },
        actionButton('Test', () => test(k), k.name),
        actionButton('Edit', () => edit(k), k.name),
        actionButton(k.disabled ? 'Enable' : 'Disable', () => act(() => api('POST', `/api/v1/connections/${k.id}/${k.disabled ? 'enable' : 'disable'}`), `${k.name} ${k.disabled ? 'enabled' : 'disabled'}.`), k.name),
        actionButton('Delete', () => confirm(`Delete the connection ${k.name}?`) && act(() => api('DELETE', `/api/v1/connections/${k.id}`), `${k.name} deleted.`), k.name),
      ),
    ]),
    'No connections yet.',
  );
}

function deleteTenant(t) {
  const n = connections.filter((k) => k.tenant === t.name).length;
  // A tenant with connections goes only with them (force): say what goes before asking.
  const q = n === 0 ? `Delete the tenant ${t.name}?` : `Delete the tenant ${t.name} with its ${n} connection(s), their assets and task runs?`;
  if (!confirm(q)) return;
  act(() => api('DELETE', `/api/v1/tenants/${encodeURIComponent(t.name)}${n > 0 ? '?force=true' : ''}`), `Tenant ${t.name} deleted.`);
}

document.getElementById('tenant-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = document.getElementById('tenant-name').value.trim();
  const integrationEnabled = document.getElementById('tenant-integration').checked;
  if (await act(() => api('POST', '/api/v1/tenants', { name, integrationEnabled }), `Tenant ${name} added.`)) e.target.reset();
});

async function act(f, done) {
  try {
    await f();
    say('ksc-status', done);
    await loadAll();
    return true;
  } catch (e) {
    err(e);
    return false;
  }
}

async function test(k) {
  say('ksc-status', `Testing ${k.name}…`);
  try {
    const r = await api('POST', `/api/v1/connections/${k.id}/test`);
    say('ksc-status', r.result.ok === false ? `${k.name}: ${r.result.error ?? 'failed'}` : `${k.name}: the connection works${r.result.version ? ` (KSC ${r.result.version})` : ''}.`, r.result.ok === false);
  } catch (e) {
    err(e);
  }
}

/** The connection being edited (its TLS settings: a cleared pin keeps the others). */
let editing;

function edit(k) {
  editing = k;
  document.getElementById('conn-legend').textContent = `Edit connection ${k.name}`;
  document.getElementById('conn-id').value = k.id;
  document.getElementById('conn-tenant').value = k.tenant;
  document.getElementById('conn-tenant').disabled = true;
  document.getElementById('conn-name').value = k.name;
  document.getElementById('conn-url').value = k.url;
  document.getElementById('conn-pin').value = k.tls?.pinSha256 ?? '';
  document.getElementById('conn-disabled').checked = k.disabled;
  document.getElementById('conn-password').value = '';
  document.getElementById('conn-name').focus();
}

document.getElementById('conn-reset').addEventListener('click', () => {
  editing = undefined;
  document.getElementById('conn-legend').textContent = 'Add a connection';
  document.getElementById('conn-id').value = '';
  document.getElementById('conn-tenant').disabled = false;
});

document.getElementById('conn-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const id = f.get('id');
  const body = { name: f.get('name'), url: f.get('url'), disabled: document.getElementById('conn-disabled').checked };
  const pin = String(f.get('pin') ?? '').trim();
  if (id === '') {
    if (pin !== '') body.tls = { pinSha256: pin };
  } else if (editing !== undefined && editing.id === id && pin !== (editing.tls?.pinSha256 ?? '')) {
    // A new or cleared pin: the connection's other TLS settings stay as they are. Like a
    // new pin, clearing it needs the user and password again (the server says so).
    const { pinSha256: _old, ...rest } = editing.tls ?? {};
    body.tls = pin === '' ? rest : { ...rest, pinSha256: pin };
  }
  const user = String(f.get('user') ?? '');
  const password = String(f.get('password') ?? '');
  if (user !== '' || password !== '') body.secret = { user, password };
  if (id === '') body.tenant = f.get('tenant');
  const what = body.tls !== undefined && body.tls.pinSha256 === undefined && id !== '' ? `Connection ${body.name} saved; its certificate pin is removed.` : `Connection ${body.name} saved.`;
  // A failed save keeps the form as it was (an edit stays an edit): fix it and save again.
  if (!(await act(() => (id === '' ? api('POST', '/api/v1/connections', body) : api('PATCH', `/api/v1/connections/${id}`, body)), what))) return;
  e.target.reset();
  document.getElementById('conn-reset').click();
});

async function loadAssets() {
  assets = (await api('GET', '/api/v1/assets')).assets;
  renderAssets();
}

function renderAssets() {
  const q = document.getElementById('asset-q').value.trim().toLowerCase();
  const hit = (a) => q === '' || [a.displayName, a.fqdn, a.kscHostId, a.group?.name, ...a.ips].some((v) => v && String(v).toLowerCase().includes(q));
  fillRows(
    document.getElementById('assets'),
    assets.filter(hit).map((a) => [el('td', {}, el('a', { href: `/console/ksc/assets/${encodeURIComponent(a.id)}` }, a.displayName ?? a.kscHostId)), a.ips.join(', '), a.group?.name ?? '—', a.products.map((p) => p.product).join(', ') || '—', when(a.lastVisible)]),
    'No assets (import them from an enabled connection).',
  );
}

document.getElementById('asset-search').addEventListener('submit', (e) => {
  e.preventDefault();
  renderAssets();
});

document.getElementById('import').addEventListener('click', async () => {
  say('ksc-status', 'Importing assets…');
  try {
    const r = await api('POST', '/api/v1/assets/sync', {});
    say('ksc-status', r.results.map((x) => `${x.connection}: ${x.ok ? `${x.hosts} hosts imported` : `failed: ${x.error}`}`).join('; ') || nothingToImport());
    await loadAssets();
  } catch (e) {
    err(e);
  }
});

/** Why an import had no connection to import from: what is actually off. */
function nothingToImport() {
  if (connections.length === 0) return 'No connection to import from: add one.';
  const enabled = connections.filter((k) => !k.disabled);
  if (enabled.length === 0) return 'Every connection is disabled: enable one to import its assets.';
  const off = [...new Set(enabled.filter((k) => tenants.find((t) => t.name === k.tenant)?.integrationEnabled === false).map((k) => k.tenant))];
  if (off.length > 0) return `The KSC integration is off for tenant ${off.join(', ')} (of the enabled connections): enable it to import assets.`;
  return 'No connection was imported.';
}

async function loadRuns() {
  const runs = (await api('GET', '/api/v1/tasks/runs?limit=50')).runs;
  fillRows(document.getElementById('runs'), runs.map((r) => [String(r.id), r.taskName, r.hostName ?? r.assetId, r.rule ? `rule ${r.rule}` : r.origin, el('td', { class: 'run-state' }, badge(r.state)), when(r.updatedAt)]), 'No task runs.');
}

/**
 * Every trigger that neither started nor failed, by why: Triggered = Started + Failed +
 * Skipped (+ pending: queued or in flight). `skippedDuplicate` is read when the API has it.
 */
const SKIPS = [['skippedRunning', 'running'], ['skippedCooldown', 'cooldown'], ['skippedQueued', 'queue full'], ['skippedDuplicate', 'duplicate'], ['dropped', 'dropped']];
function skipped(c) {
  const parts = SKIPS.filter(([k]) => (c[k] ?? 0) > 0).map(([k, why]) => `${c[k]} ${why}`);
  const total = SKIPS.reduce((n, [k]) => n + (c[k] ?? 0), 0);
  return parts.length === 0 ? String(total) : `${total} (${parts.join(', ')})`;
}

function triggered(r) {
  const pending = (r.queued ?? 0) + (r.inFlight ?? 0);
  return pending > 0 ? `${r.counters.triggered} (${pending} pending)` : String(r.counters.triggered);
}

async function loadRules() {
  const rules = (await api('GET', '/api/v1/rules')).rules;
  fillRows(
    document.getElementById('rules'),
    rules.map((r) => [r.name, r.tasks.join(', '), r.filter ?? '(every event)', triggered(r), String(r.counters.started), String(r.counters.failed), skipped(r.counters), String(r.counters.noAsset ?? 0),
      r.lastTriggers.length === 0 ? '—' : el('td', {}, el('ul', {}, ...r.lastTriggers.slice(-3).reverse().map((t) => el('li', {}, `${when(t.at)}: ${t.result.replaceAll('_', ' ')}${t.task ? ` (${t.task})` : ''}`))))]),
    'No response rules (configure ksc.response_rules).',
  );
}

async function loadAll() {
  try {
    await Promise.all([loadConnections(), loadAssets(), loadRuns(), loadRules()]);
  } catch (e) {
    err(e);
  }
}

loadAll();
setInterval(() => loadRuns().catch(err), 3000);
