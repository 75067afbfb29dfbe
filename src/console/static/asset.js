import { api, el, fillRows, say, when, badge } from './common.js';

const id = document.getElementById('asset-main').dataset.asset;
const select = document.getElementById('task');
const why = document.getElementById('task-why');
let tasks = [];
let asset;

function explain() {
  const t = tasks.find((x) => x.displayName === select.value);
  why.textContent = t === undefined ? '' : `${t.applicable ? '✔ Applies' : '✖ Does not apply'}: ${t.reason}.`;
}

async function loadAsset() {
  const a = (await api('GET', `/api/v1/assets/${encodeURIComponent(id)}`)).asset;
  asset = a;
  document.getElementById('asset-title').textContent = a.displayName ?? a.kscHostId;
  const facts = [
    ['Host', a.fqdn ?? a.displayName ?? a.kscHostId],
    ['IP addresses', a.ips.join(', ') || '—'],
    ['Products', a.products.map((p) => `${p.product} ${p.version ?? ''}`.trim()).join(', ') || '—'],
    ['Group', a.group?.name ?? '—'],
    ['Operating system', a.os ?? '—'],
    ['Last seen', when(a.lastVisible)],
    ['Status', a.status],
  ];
  document.getElementById('asset-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  return a;
}

async function loadTasks() {
  const r = await api('GET', `/console/api/assets/${encodeURIComponent(id)}/tasks`);
  tasks = r.tasks;
  select.replaceChildren(...tasks.map((t) => el('option', { value: t.displayName }, `${t.displayName}${t.applicable ? '' : ' (does not apply)'}`)));
  const first = tasks.find((t) => t.applicable);
  if (first) select.value = first.displayName;
  explain();
}

async function loadRuns() {
  const runs = (await api('GET', `/api/v1/tasks/runs?asset=${encodeURIComponent(id)}`)).runs;
  fillRows(document.getElementById('runs'), runs.map((r) => [String(r.id), r.taskName, r.rule ? `rule ${r.rule}` : r.origin, el('td', { class: 'run-state' }, badge(r.state)), when(r.updatedAt)]), 'No task runs for this asset.');
}

async function loadEvents() {
  const r = await api('GET', `/console/api/events?limit=20&text=${encodeURIComponent(id)}`);
  const list = document.getElementById('asset-events');
  list.replaceChildren(...r.events.map((e) => el('li', {}, `${when(e.receivedAt)} · ${e.eventClassId ?? ''} ${e.name ?? ''}`)));
  if (r.events.length === 0) list.append(el('li', {}, `None among the last ${r.inMemory} events in memory.`));
}

select.addEventListener('change', explain);
/**
 * A task's scope in words. KSC's RunTask starts a task on every device of its scope, never
 * on one device (docs/ksc-integration.md, "KSC tasks").
 */
function scope(t) {
  if (t === undefined || t.groupId === undefined || t.groupId === null || t.groupId < 0) return 'its whole scope (every device of its device selection)';
  const g = asset?.group?.id === t.groupId && asset.group.name ? `"${asset.group.name}"` : `${t.groupId}`;
  return `its whole scope (every device of administration group ${g} and its subgroups)`;
}

document.getElementById('start-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const t = tasks.find((x) => x.displayName === select.value);
  const where = scope(t);
  if (!confirm(`Start the KSC task "${select.value}"? KSC runs it on ${where}, not only on this asset.`)) {
    say('asset-status', 'Not started.');
    return;
  }
  try {
    const r = await api('POST', '/api/v1/tasks/start', { asset: id, tasks: [select.value] });
    say('asset-status', `Task "${r.task.displayName}" started (run ${r.run.id})${r.wholeScope ? `: KSC runs it on ${scope(r.task)}` : ''}.`);
    await loadRuns();
  } catch (err) {
    say('asset-status', err.message, true);
  }
});

(async () => {
  try {
    await loadAsset();
    await Promise.all([loadTasks(), loadRuns(), loadEvents()]);
  } catch (e) {
    say('asset-status', e.message, true);
  }
})();
setInterval(() => loadRuns().catch((e) => say('asset-status', e.message, true)), 2000);
