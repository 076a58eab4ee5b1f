// Mooring hub dashboard: a dependency-free single page app (hash routing).
// Owns: login, the environments view, environment details (metrics, enrollment tokens), adding an
// environment, the image push form with live progress, and the live event stream.
// Must never: store the API key (the hub keeps an HttpOnly session cookie), insert data as HTML
// (all text goes through textContent), or fetch anything that is not this hub's API.

'use strict';

/* ------------------------------------------------------------------ helpers */

const $ = (sel, root = document) => root.querySelector(sel);
const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'htmlFor', 'open']);

/** Builds an element; strings become text nodes, never HTML. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const kid of kids) if (kid) el.append(kid);
  return el;
}

function fmtBytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function fmtPct(n) {
  return typeof n === 'number' && isFinite(n) ? `${n < 10 ? n.toFixed(1) : Math.round(n)} %` : '–';
}

function fmtDuration(secs) {
  if (typeof secs !== 'number' || !isFinite(secs) || secs < 0) return '–';
  secs = Math.floor(secs);
  const d = Math.floor(secs / 86400), hr = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} min`;
  if (m) return `${m} min`;
  return `${secs} s`;
}

function parseTime(t) {
  if (t == null) return null;
  const ms = typeof t === 'number' ? t * 1000 : Date.parse(t);
  return isFinite(ms) ? ms : null;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A span whose "… ago" text the ticker refreshes every second. */
function ageEl(t, fallback = '–') {
  const ms = parseTime(t);
  if (ms == null) return h('span', { class: 'muted', text: fallback });
  return h('time', { dataset: { ts: String(ms) }, datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString(), text: ago(ms) });
}

function tickAges() {
  for (const el of document.querySelectorAll('[data-ts]')) {
    const txt = ago(Number(el.dataset.ts));
    if (el.textContent !== txt) el.textContent = txt;
  }
}

function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

const REASONS = {
  closed: 'connection closed by the agent',
  timeout: 'heartbeat timeout',
  replaced: 'replaced by a newer connection',
  refused: 'refused by the hub',
  revoked: 'token revoked or expired',
  deleted: 'environment deleted',
  shutdown: 'hub restarted',
};
const reasonText = (r) => REASONS[r] || String(r);

/* ---------------------------------------------------------------------- API */

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/**
 * Calls the hub API. Relative URLs, so the hub also works behind a path prefix.
 * Sends no `Accept: application/json` on purpose: the push endpoint answers synchronously when asked for it.
 */
async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', cache: 'no-store', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'Cannot reach the hub (network error). Check that mooring-hub is running and reachable.');
  }
  let data = null;
  const text = res.status === 204 ? '' : await res.text().catch(() => '');
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (res.status === 401 && path !== 'api/session') {
    onUnauthorized();
    throw new ApiError(401, 'Your session has ended. Log in again.');
  }
  if (!res.ok) {
    const msg = data && typeof data.error === 'string' && data.error ? data.error : `The hub answered ${res.status} ${res.statusText}`.trim();
    throw new ApiError(res.status, msg);
  }
  return data;
}

/* -------------------------------------------------------------------- state */

const MAX_EVENTS = 100;
const state = {
  authed: false,
  envs: new Map(),      // id -> environment object, as the API returns it
  envsLoaded: false,
  envsError: null,
  events: [],           // newest first, without metrics events
  seen: new Set(),      // seq numbers in `events`
};

let view = null;        // current view: { el, update?(kind, arg), destroy?() }

function notify(kind, arg) {
  if (view && view.update) view.update(kind, arg);
}

async function loadEnvs() {
  try {
    const list = await api('GET', 'api/environments');
    state.envs = new Map((Array.isArray(list) ? list : []).map((e) => [e.id, e]));
    state.envsLoaded = true;
    state.envsError = null;
  } catch (err) {
    if (err.status === 401) return;
    state.envsError = err.message;
  }
  notify('envs');
}

const pendingRefresh = new Map();
function refreshEnvSoon(id) {
  if (id == null || pendingRefresh.has(id)) return;
  pendingRefresh.set(id, setTimeout(async () => {
    pendingRefresh.delete(id);
    try {
      const env = await api('GET', `api/environments/${encodeURIComponent(id)}`);
      state.envs.set(env.id, env);
    } catch (err) {
      if (err.status === 404) state.envs.delete(id);
      else return;
    }
    notify('env', id);
  }, 150));
}

function envName(id) {
  const env = state.envs.get(id);
  return env ? env.name : `#${id}`;
}

/* ------------------------------------------------------------- live events */

let es = null;
let esRetryTimer = null;
let esBackoff = 1000;
let esOpenedOnce = false;

function setLive(s) {
  const el = $('#live');
  el.dataset.state = s;
  el.textContent = s;
  el.title = s === 'live' ? 'Receiving live events' : s === 'reconnecting' ? 'Event stream interrupted; reconnecting' : 'Connecting to the event stream';
}

function startEvents() {
  stopEvents();
  setLive(esOpenedOnce ? 'reconnecting' : 'connecting');
  const src = new EventSource('api/events');
  es = src;
  src.onopen = () => {
    if (es !== src) return;
    setLive('live');
    esBackoff = 1000;
    if (esOpenedOnce) { loadEnvs(); fillEvents(true); }   // catch up on what was missed
    esOpenedOnce = true;
  };
  src.onmessage = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    if (ev && typeof ev === 'object') handleEvent(ev);
  };
  src.onerror = () => {
    if (es !== src) return;
    setLive('reconnecting');
    if (src.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. HTTP error): check the session, then retry with backoff.
      src.close();
      es = null;
      esRetryTimer = setTimeout(async () => {
        esRetryTimer = null;
        try { await api('GET', 'api/health'); await loadEnvs(); } catch { /* still down */ }
        if (state.authed) startEvents();
      }, esBackoff);
      esBackoff = Math.min(esBackoff * 2, 30000);
    }
  };
}

function stopEvents() {
  if (es) { es.close(); es = null; }
  if (esRetryTimer) { clearTimeout(esRetryTimer); esRetryTimer = null; }
}

async function fillEvents(replace) {
  try {
    const res = await api('GET', 'api/events?since=0');
    const list = res && Array.isArray(res.events) ? res.events : [];
    if (replace) { state.events = []; state.seen.clear(); }
    for (const ev of list) addEvent(ev);
    notify('events');
  } catch { /* the list stays as it is; live events still arrive */ }
}

function addEvent(ev) {
  if (ev.kind === 'metrics' || typeof ev.seq !== 'number' || state.seen.has(ev.seq)) return false;
  state.seen.add(ev.seq);
  state.events.push(ev);
  state.events.sort((a, b) => b.seq - a.seq);
  while (state.events.length > MAX_EVENTS) state.seen.delete(state.events.pop().seq);
  return true;
}

function handleEvent(ev) {
  if (addEvent(ev)) notify('event', ev);
  if (ev.kind === 'metrics') notify('metrics', ev);
  if (ev.envId != null) refreshEnvSoon(ev.envId);
}

function describeEvent(ev) {
  const d = ev.detail && typeof ev.detail === 'object' ? ev.detail : {};
  switch (ev.kind) {
    case 'agent.connected': {
      const who = d.agentName || d.name || d.agentId || 'Agent';
      return `${who}${d.version ? ' ' + d.version : ''} connected`;
    }
    case 'agent.disconnected':
      return `Agent disconnected: ${d.reason ? reasonText(d.reason) : 'unknown reason'}`;
    case 'agent.conflict':
      return `Refused agent ${d.agentName || d.agentId || ''}: another agent holds this environment`.replace('  ', ' ');
    case 'container': {
      const attrs = (d.Actor && d.Actor.Attributes) || {};
      const name = d.containerName || d.name || attrs.name || (d.containerId || d.id || d.ID || '').slice(0, 12) || 'container';
      const action = d.action || d.Action || d.status || 'changed';
      return `Container ${name}: ${action}`;
    }
    case 'push.finished':
      return d.status === 'error' || d.error ? `Push failed: ${d.error || 'unknown error'}` : `Pushed ${d.targetTag || d.message || 'image'}`;
    default:
      return ev.kind || 'event';
  }
}

function eventTone(ev) {
  if (ev.kind === 'agent.connected') return 'ok';
  if (ev.kind === 'agent.disconnected') return 'off';
  if (ev.kind === 'agent.conflict') return 'warn';
  if (ev.kind === 'push.finished') return ev.detail && (ev.detail.status === 'error' || ev.detail.error) ? 'bad' : 'ok';
  return 'info';
}

function eventList(filterEnv) {
  const ul = h('ul', { class: 'events' });
  const render = () => {
    const items = state.events.filter((e) => filterEnv == null || e.envId === filterEnv).slice(0, filterEnv == null ? 30 : 15);
    ul.replaceChildren(...items.map((ev) => h('li', { class: 'event', dataset: { tone: eventTone(ev), seq: ev.seq } },
      h('span', { class: 'event-dot', 'aria-hidden': 'true' }),
      h('span', { class: 'event-text' },
        filterEnv == null && ev.envId != null ? [h('a', { href: `#/env/${ev.envId}`, text: envName(ev.envId) }), ' · '] : null,
        describeEvent(ev)),
      h('span', { class: 'event-kind', text: ev.kind }),
      ageEl(ev.time))));
    if (!items.length) ul.append(h('li', { class: 'empty', text: 'No events yet.' }));
  };
  render();
  return { el: ul, render };
}

/* -------------------------------------------------------------- components */

function statusBadge(status) {
  const s = status === 'online' || status === 'conflict' ? status : 'offline';
  return h('span', { class: 'status', dataset: { status: s } },
    h('span', { class: 'status-dot', 'aria-hidden': 'true' }),
    h('span', { class: 'status-text', text: s }));
}

function meter(pct, label) {
  const p = Math.max(0, Math.min(100, Number(pct) || 0));
  const bar = h('span', { class: 'meter-fill' });
  bar.style.width = `${p}%`;
  return h('span', { class: 'meter', role: 'img', 'aria-label': label, dataset: { level: p >= 90 ? 'high' : p >= 70 ? 'mid' : 'low' } }, bar);
}

function usage(used, total) {
  return typeof used === 'number' && typeof total === 'number' && total > 0 ? (used / total) * 100 : null;
}

function pageHead(title, ...right) {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: '-1', text: title }), h('div', { class: 'page-actions' }, right));
}

function callout(tone, ...kids) {
  return h('div', { class: 'callout', dataset: { tone }, role: tone === 'bad' ? 'alert' : null }, kids);
}

async function copyText(text, btn) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); ok = true; }
  } catch { ok = false; }
  if (!ok) {
    const ta = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  btn.textContent = ok ? 'Copied' : 'Select and copy';
  btn.dataset.copied = ok ? 'yes' : 'no';
  setTimeout(() => { btn.textContent = 'Copy'; delete btn.dataset.copied; }, 1800);
}

function codeBlock(label, text) {
  const btn = h('button', { type: 'button', class: 'btn btn-small', text: 'Copy', 'aria-label': `Copy ${label}` });
  btn.addEventListener('click', () => copyText(text, btn));
  return h('div', { class: 'code-block' },
    h('div', { class: 'code-head' }, h('span', { text: label }), btn),
    h('pre', { tabindex: '0' }, h('code', { text: text })));
}

function installPanel(tok) {
  const inst = (tok && tok.install) || {};
  const exp = parseTime(tok.expiresAt);
  return h('div', { class: 'install' },
    callout('warn', h('strong', { text: 'Copy this token now. ' }),
      'It is shown only once and cannot be retrieved later; generate a new one if it is lost.'),
    codeBlock('Token', tok.token || ''),
    h('p', { class: 'hint' }, `Prefix ${tok.prefix || '–'} · `,
      exp == null ? 'does not expire' : `expires ${new Date(exp).toLocaleString()}`,
      '.'),
    inst.oneLiner ? codeBlock('Install script (one-liner)', inst.oneLiner) : null,
    inst.command ? codeBlock('Run the binary', inst.command) : null,
    inst.systemd ? codeBlock('systemd', inst.systemd) : null,
    inst.docker ? codeBlock('Docker', inst.docker) : null);
}

function tokenForm(envId) {
  const out = h('div', { class: 'token-out' });
  const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const sel = h('select', { id: `token-exp-${envId}` },
    h('option', { value: '', text: 'Hub default' }),
    h('option', { value: '3600', text: '1 hour' }),
    h('option', { value: '86400', text: '24 hours' }),
    h('option', { value: '604800', text: '7 days' }));
  const btn = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Generate token' });
  const form = h('form', { class: 'inline-form' },
    h('label', { for: sel.id, text: 'Expires after' }), sel, btn);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    btn.disabled = true;
    err.hidden = true;
    try {
      const body = sel.value ? { expiresInSecs: Number(sel.value) } : {};
      const tok = await api('POST', `api/environments/${encodeURIComponent(envId)}/tokens`, body);
      out.replaceChildren(installPanel(tok));
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    } finally {
      btn.disabled = false;
    }
  });
  return h('div', {}, form, err, out);
}

/* -------------------------------------------------------------- sparklines */

const SPARK_W = 600, SPARK_H = 72;

/** Inline SVG sparkline; gaps longer than three sample intervals break the line. */
function sparkline(samples, get, max, label) {
  const pts = samples.map((s) => [s.timestamp, get(s)]).filter(([t, v]) => isFinite(t) && typeof v === 'number' && isFinite(v));
  const root = svg('svg', { viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, preserveAspectRatio: 'none', class: 'spark', role: 'img', 'aria-label': label });
  for (const y of [0.25, 0.5, 0.75]) root.append(svg('line', { x1: 0, x2: SPARK_W, y1: SPARK_H * y, y2: SPARK_H * y, class: 'spark-grid', 'vector-effect': 'non-scaling-stroke' }));
  if (pts.length < 2) return root;
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0], span = Math.max(t1 - t0, 1);
  const gaps = [];
  for (let i = 1; i < pts.length; i++) gaps.push(pts[i][0] - pts[i - 1][0]);
  const step = gaps.slice().sort((a, b) => a - b)[Math.floor(gaps.length / 2)] || 30;
  const x = (t) => ((t - t0) / span) * SPARK_W;
  const y = (v) => SPARK_H - 2 - (Math.min(Math.max(v, 0), max) / max) * (SPARK_H - 4);
  let seg = [];
  const flush = () => {
    if (seg.length > 1) {
      const line = seg.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      root.append(svg('polygon', { points: `${x(seg[0][0]).toFixed(1)},${SPARK_H} ${line} ${x(seg[seg.length - 1][0]).toFixed(1)},${SPARK_H}`, class: 'spark-area' }));
      root.append(svg('polyline', { points: line, class: 'spark-line', 'vector-effect': 'non-scaling-stroke' }));
    }
    seg = [];
  };
  pts.forEach((p, i) => {
    if (i > 0 && p[0] - pts[i - 1][0] > Math.max(90, step * 3)) flush();
    seg.push(p);
  });
  flush();
  return root;
}

function metricChart(title, value, sub, samples, get, max, label) {
  const first = samples.length ? samples[0].timestamp * 1000 : null;
  const last = samples.length ? samples[samples.length - 1].timestamp * 1000 : null;
  return h('figure', { class: 'metric' },
    h('figcaption', {}, h('span', { class: 'metric-title', text: title }), h('span', { class: 'metric-value', text: value }), h('span', { class: 'metric-sub muted', text: sub })),
    sparkline(samples, get, max, label),
    h('div', { class: 'spark-axis muted' },
      h('span', { text: first ? clockTime(first) : '' }),
      h('span', { text: last ? `${fmtDuration((last - first) / 1000)} shown` : 'no samples yet' }),
      h('span', { text: last ? clockTime(last) : '' })));
}

function metricsPanel(samples, fallback) {
  const cur = samples.length ? samples[samples.length - 1] : fallback;
  if (!cur) return h('p', { class: 'muted', text: 'No metrics received yet. Agents report every 30 seconds while connected.' });
  const prev = samples.length > 1 ? samples[samples.length - 2] : null;
  const memTotal = Math.max(cur.memoryTotal || 0, ...samples.map((s) => s.memoryTotal || 0)) || 1;
  const memPct = usage(cur.memoryUsed, cur.memoryTotal);
  const diskPct = usage(cur.diskUsed, cur.diskTotal);
  let rx = null, tx = null;
  if (prev && cur.timestamp > prev.timestamp) {
    const dt = cur.timestamp - prev.timestamp;
    if (cur.networkRxBytes >= prev.networkRxBytes) rx = (cur.networkRxBytes - prev.networkRxBytes) / dt;
    if (cur.networkTxBytes >= prev.networkTxBytes) tx = (cur.networkTxBytes - prev.networkTxBytes) / dt;
  }
  const cpuMax = Math.max(100, ...samples.map((s) => s.cpuUsage || 0));
  return h('div', { class: 'metrics' },
    h('div', { class: 'metric-charts' },
      metricChart('CPU', fmtPct(cur.cpuUsage), cur.cpuCores ? `${cur.cpuCores} cores` : '', samples, (s) => s.cpuUsage, cpuMax, 'CPU usage over time'),
      metricChart('Memory used', fmtBytes(cur.memoryUsed), `of ${fmtBytes(cur.memoryTotal)}${memPct != null ? ` (${fmtPct(memPct)})` : ''}`, samples, (s) => s.memoryUsed, memTotal, 'Memory used over time')),
    h('dl', { class: 'facts facts-row' },
      h('div', {}, h('dt', { text: 'Disk' }), h('dd', {}, `${fmtBytes(cur.diskUsed)} / ${fmtBytes(cur.diskTotal)} `, diskPct != null ? meter(diskPct, `Disk ${fmtPct(diskPct)} used`) : null)),
      h('div', {}, h('dt', { text: 'Network' }), h('dd', { text: rx != null ? `↓ ${fmtBytes(rx)}/s · ↑ ${fmtBytes(tx)}/s` : `↓ ${fmtBytes(cur.networkRxBytes)} · ↑ ${fmtBytes(cur.networkTxBytes)} total` })),
      h('div', {}, h('dt', { text: 'Host uptime' }), h('dd', { text: fmtDuration(cur.uptime) }))));
}

/* -------------------------------------------------------------------- views */

function viewEnvironments() {
  const summary = h('p', { class: 'summary muted' });
  const tbody = h('tbody');
  const rows = new Map();
  const table = h('table', { id: 'env-table', class: 'table' },
    h('caption', { class: 'sr-only', text: 'Environments and their agents' }),
    h('thead', {}, h('tr', {},
      ['Name', 'Status', 'Agent', 'Host', 'Docker', 'RTT', 'CPU', 'Memory', 'Last seen'].map((t, i) => h('th', { scope: 'col', class: i >= 3 && i <= 5 ? 'opt' : null, text: t })))),
    tbody);
  const note = h('div', { class: 'table-note' });
  const events = eventList(null);

  function fillRow(tr, env) {
    const a = env.agent || null;
    const m = env.lastMetrics || null;
    const memPct = m ? usage(m.memoryUsed, m.memoryTotal) : null;
    const statusCell = h('td', {}, statusBadge(env.status));
    if (env.status === 'offline' && env.disconnectReason) statusCell.append(h('span', { class: 'status-reason muted', text: reasonText(env.disconnectReason) }));
    if (env.status === 'conflict') statusCell.append(h('span', { class: 'status-reason warn-text', text: 'second agent refused' }));
    tr.replaceChildren(
      h('th', { scope: 'row' }, h('a', { href: `#/env/${env.id}`, class: 'env-link', text: env.name }), h('span', { class: 'tag', text: env.type })),
      statusCell,
      h('td', {}, a ? [h('span', { text: a.name || '–' }), h('span', { class: 'muted small', text: a.version ? ` ${a.version}` : '' })] : h('span', { class: 'muted', text: '–' })),
      h('td', { class: 'mono small opt', text: (a && a.hostname) || '–' }),
      h('td', { class: 'small opt', text: (a && a.dockerVersion) || '–' }),
      h('td', { class: 'num opt', text: typeof env.rttMs === 'number' ? `${Math.round(env.rttMs)} ms` : '–' }),
      h('td', { class: 'num' }, m && typeof m.cpuUsage === 'number' ? [meter(m.cpuUsage, `CPU ${fmtPct(m.cpuUsage)}`), ' ', fmtPct(m.cpuUsage)] : '–'),
      h('td', { class: 'num' }, memPct != null ? [meter(memPct, `Memory ${fmtPct(memPct)}`), ' ', fmtBytes(m.memoryUsed)] : '–'),
      h('td', {}, ageEl(env.lastSeen || (a && a.lastSeen), env.type === 'local' ? 'local' : 'never')));
  }

  function render() {
    const envs = [...state.envs.values()].sort((a, b) => a.id - b.id);
    for (const [id, tr] of rows) if (!state.envs.has(id)) { tr.remove(); rows.delete(id); }
    for (const env of envs) {
      let tr = rows.get(env.id);
      if (!tr) {
        tr = h('tr', { dataset: { envId: String(env.id) }, class: 'clickable' });
        tr.addEventListener('click', (e) => { if (!e.target.closest('a')) location.hash = `#/env/${tr.dataset.envId}`; });
        rows.set(env.id, tr);
      }
      if (tr.dataset.status && tr.dataset.status !== env.status) {
        tr.classList.remove('flash');
        void tr.offsetWidth;   // restart the animation
        tr.classList.add('flash');
      }
      tr.dataset.status = env.status;
      fillRow(tr, env);
      tbody.append(tr);
    }
    const count = (s) => envs.filter((e) => e.status === s).length;
    summary.textContent = envs.length
      ? `${envs.length} environment${envs.length === 1 ? '' : 's'} · ${count('online')} online · ${count('offline')} offline${count('conflict') ? ` · ${count('conflict')} in conflict` : ''}`
      : '';
    note.replaceChildren();
    if (state.envsError) note.append(callout('bad', `Could not load environments: ${state.envsError}`));
    else if (!state.envsLoaded) note.append(h('p', { class: 'muted', text: 'Loading environments…' }));
    else if (!envs.length) note.append(h('div', { class: 'empty-state' }, h('p', { text: 'No environments yet.' }), h('a', { class: 'btn btn-primary', href: '#/add', text: 'Add an environment' })));
  }

  render();
  const el = h('div', { class: 'page' },
    pageHead('Environments', h('a', { class: 'btn', href: '#/push', text: 'Push image' }), h('a', { class: 'btn btn-primary', href: '#/add', text: 'Add environment' })),
    summary,
    h('div', { class: 'card card-flush' }, h('div', { class: 'table-wrap' }, table), note),
    h('section', { class: 'card', 'aria-labelledby': 'events-title' }, h('h2', { id: 'events-title', text: 'Recent events' }), events.el));
  return {
    el, title: 'Environments',
    update(kind) {
      if (kind === 'env' || kind === 'envs') { render(); events.render(); }
      if (kind === 'event' || kind === 'events') events.render();
    },
  };
}

function viewEnvironment(id) {
  const el = h('div', { class: 'page' });
  let samples = [];
  let metricsError = null;
  let metricsLoaded = false;
  const metricsBox = h('div');
  const events = eventList(id);
  const tokens = tokenForm(id);
  let built = false;
  const head = h('div');
  const info = h('div', { class: 'stack' });

  function renderMetrics() {
    const env = state.envs.get(id);
    metricsBox.replaceChildren(metricsError ? callout('bad', `Could not load metrics: ${metricsError}`)
      : !metricsLoaded ? h('p', { class: 'muted', text: 'Loading metrics…' })
        : metricsPanel(samples, env && env.lastMetrics));
  }

  function renderInfo() {
    const env = state.envs.get(id);
    if (!env) {
      head.replaceChildren(pageHead('Environment'));
      info.replaceChildren(state.envsLoaded ? callout('bad', `Environment ${id} does not exist (it may have been deleted). `, h('a', { href: '#/', text: 'Back to environments' })) : h('p', { class: 'muted', text: 'Loading…' }));
      return false;
    }
    document.title = `${env.name} · Mooring`;
    const a = env.agent;
    head.replaceChildren(
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/', text: 'Environments' }), h('span', { 'aria-hidden': 'true', text: ' / ' }), h('span', { text: env.name })),
      h('div', { class: 'page-head' },
        h('h1', { tabindex: '-1' }, env.name, ' ', h('span', { class: 'tag', text: env.type })),
        h('div', { class: 'page-actions', dataset: { envId: String(env.id) } }, statusBadge(env.status))));
    const notes = [];
    if (env.status === 'conflict' && env.conflict) {
      notes.push(callout('warn', h('strong', { text: 'Conflict: ' }),
        `a second agent (${env.conflict.agentName || 'unnamed'}, id ${env.conflict.agentId || '?'}) tried to connect `, ageEl(env.conflict.at),
        ' and was refused while another agent holds this environment. Stop the duplicate agent or give it its own token.'));
    } else if (env.status === 'conflict') {
      notes.push(callout('warn', 'Conflict: more than one agent claims this environment.'));
    }
    if (env.status === 'offline' && env.type === 'edge') {
      notes.push(callout('off', a || env.lastSeen
        ? ['Agent offline', env.disconnectReason ? ` (${reasonText(env.disconnectReason)})` : '', ', last seen ', ageEl(env.lastSeen), '.',
          env.disconnectCount ? ` ${env.disconnectCount} disconnect${env.disconnectCount === 1 ? '' : 's'} so far.` : '']
        : 'No agent has connected yet. Generate a token below and install the agent on the Docker host.'));
    }
    const fact = (k, v) => h('div', {}, h('dt', { text: k }), h('dd', {}, v == null || v === '' ? h('span', { class: 'muted', text: '–' }) : v));
    info.replaceChildren(...notes, h('div', { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'agent-title' },
        h('h2', { id: 'agent-title', text: 'Agent' }),
        a ? h('dl', { class: 'facts' },
          fact('Name', a.name),
          fact('Agent ID', a.id ? h('code', { text: a.id }) : null),
          fact('Version', a.version),
          fact('Hostname', a.hostname ? h('code', { text: a.hostname }) : null),
          fact('Docker', a.dockerVersion),
          fact('Connected', a.connectedAt ? ageEl(a.connectedAt) : null),
          fact('Last seen', ageEl(env.lastSeen || a.lastSeen)),
          fact('Round trip', typeof env.rttMs === 'number' ? `${Math.round(env.rttMs)} ms` : null),
          fact('Disconnects', String(env.disconnectCount || 0)),
          fact('Capabilities', Array.isArray(a.capabilities) && a.capabilities.length ? h('span', { class: 'chips' }, a.capabilities.map((c) => h('span', { class: 'chip', text: c }))) : null))
          : h('p', { class: 'muted', text: env.type === 'local' ? 'The hub talks to its local Docker Engine directly.' : 'No agent connected.' })),
      h('section', { class: 'card', 'aria-labelledby': 'ev-title' }, h('h2', { id: 'ev-title', text: 'Recent events' }), events.el)));
    return true;
  }

  function build() {
    const env = state.envs.get(id);
    const sections = [head, info, h('section', { class: 'card', 'aria-labelledby': 'metrics-title' }, h('h2', { id: 'metrics-title', text: 'Host metrics' }), metricsBox)];
    if (env && env.type !== 'local') {
      sections.push(h('section', { class: 'card', 'aria-labelledby': 'enroll-title' },
        h('h2', { id: 'enroll-title', text: 'Enroll an agent' }),
        h('p', { class: 'muted', text: 'Generate an enrollment token and run one of the commands on the Docker host. The agent connects out to this hub; no inbound port is needed.' }),
        tokens));
      sections.push(dangerZone(env));
    }
    el.replaceChildren(...sections);
    built = true;
  }

  function dangerZone(env) {
    const box = h('div', { class: 'danger-row' });
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const ask = () => {
      const yes = h('button', { type: 'button', class: 'btn btn-danger', text: 'Delete' });
      const no = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
      yes.addEventListener('click', async () => {
        yes.disabled = no.disabled = true;
        try {
          await api('DELETE', `api/environments/${encodeURIComponent(env.id)}`);
          state.envs.delete(env.id);
          location.hash = '#/';
        } catch (ex) {
          err.textContent = ex.message;
          err.hidden = false;
          yes.disabled = no.disabled = false;
        }
      });
      no.addEventListener('click', idle);
      box.replaceChildren(h('span', { text: `Delete “${env.name}”? Its agent will be disconnected and can no longer connect.` }), yes, no);
      no.focus();
    };
    const idle = () => {
      const b = h('button', { type: 'button', class: 'btn btn-danger-outline', text: 'Delete environment…' });
      b.addEventListener('click', ask);
      box.replaceChildren(h('span', { class: 'muted', text: 'Removes the environment and everything the hub keeps about it.' }), b);
    };
    idle();
    return h('section', { class: 'card card-danger', 'aria-labelledby': 'danger-title' }, h('h2', { id: 'danger-title', text: 'Danger zone' }), box, err);
  }

  async function loadMetrics() {
    try {
      const res = await api('GET', `api/environments/${encodeURIComponent(id)}/metrics`);
      samples = res && Array.isArray(res.samples) ? res.samples : [];
      metricsError = null;
    } catch (ex) {
      if (ex.status === 401) return;
      metricsError = ex.status === 404 ? null : ex.message;
      samples = [];
    }
    metricsLoaded = true;
    renderMetrics();
  }

  if (renderInfo()) build(); else el.replaceChildren(head, info);
  renderMetrics();
  loadMetrics();
  if (!state.envs.has(id)) refreshEnvSoon(id);

  return {
    el, title: 'Environment',
    update(kind, arg) {
      if (kind === 'envs' || (kind === 'env' && arg === id)) {
        const had = built;
        if (renderInfo() && !had) build();
        if (!samples.length) renderMetrics();
      }
      if (kind === 'event' || kind === 'events') events.render();
      if (kind === 'metrics' && arg.envId === id && arg.detail && typeof arg.detail === 'object') {
        const ts = typeof arg.detail.timestamp === 'number' ? arg.detail.timestamp : (parseTime(arg.time) || Date.now()) / 1000;
        if (!samples.length || ts > samples[samples.length - 1].timestamp) {
          samples.push({ ...arg.detail, timestamp: ts });
          const cutoff = ts - 86400;
          while (samples.length && samples[0].timestamp < cutoff) samples.shift();
          metricsLoaded = true;
          renderMetrics();
        }
      }
    },
  };
}

function viewAdd() {
  const name = h('input', { id: 'add-name', name: 'name', required: true, maxlength: '64', autocomplete: 'off', placeholder: 'e.g. nas-basement', 'aria-describedby': 'add-name-hint' });
  const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const btn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'add-submit', text: 'Create and generate token' });
  const out = h('div');
  const form = h('form', { class: 'card form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'add-name', text: 'Name' }), name,
      h('p', { class: 'hint', id: 'add-name-hint', text: 'A short name for the Docker host, shown in lists and events.' })),
    err, h('div', { class: 'form-actions' }, btn));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.hidden = true;
    const n = name.value.trim();
    if (!n) { err.textContent = 'Enter a name for the environment.'; err.hidden = false; name.focus(); return; }
    btn.disabled = true;
    let env;
    try {
      env = await api('POST', 'api/environments', { name: n, type: 'edge' });
      state.envs.set(env.id, env);
      notify('env', env.id);
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
      btn.disabled = false;
      return;
    }
    form.hidden = true;
    const link = h('a', { class: 'btn', href: `#/env/${env.id}`, text: `Open ${env.name}` });
    try {
      const tok = await api('POST', `api/environments/${encodeURIComponent(env.id)}/tokens`, {});
      out.replaceChildren(h('section', { class: 'card' },
        h('h2', { text: `Environment “${env.name}” created` }),
        h('p', { class: 'muted', text: 'Install the agent on the Docker host with one of these commands. It will appear online here as soon as it connects.' }),
        installPanel(tok), h('div', { class: 'form-actions' }, link)));
    } catch (ex) {
      out.replaceChildren(h('section', { class: 'card' },
        callout('bad', `Environment “${env.name}” was created, but no token could be generated: ${ex.message}. Generate one from the environment page.`),
        h('div', { class: 'form-actions' }, link)));
    }
  });
  const el = h('div', { class: 'page page-narrow' },
    pageHead('Add environment'),
    h('p', { class: 'muted', text: 'An environment is a Docker host reached through a mooring-agent. The agent dials out to this hub, so the host may sit behind NAT or a dynamic IP.' }),
    form, out);
  return { el, title: 'Add environment', focus: name };
}

/* --------------------------------------------------------------- push view */

const DONE_LAYER = /^(pushed|layer already exists|already exists|mounted from)/i;
let pushView = null;   // kept across navigation so a running push keeps its progress

function registryHost(url) {
  return String(url || '').replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
}

function stripRegistry(tag) {
  const parts = String(tag || '').split('/');
  return parts.length > 1 && /[.:]/.test(parts[0]) || parts[0] === 'localhost' && parts.length > 1 ? parts.slice(1).join('/') : String(tag || '');
}

function createPushView() {
  let registries = [];
  let images = [];
  let imagesFor = null;
  let job = null;    // { id, src, layers: Map, phasePct, done }

  const envSel = h('select', { id: 'push-env', name: 'env', required: true });
  const imgSel = h('select', { id: 'push-image', name: 'image', required: true, disabled: true });
  const regSel = h('select', { id: 'push-registry', name: 'registry', required: true });
  const tagIn = h('input', { id: 'push-tag', name: 'tag', autocomplete: 'off', spellcheck: 'false', placeholder: 'keep the current tag, e.g. app:v1.0', 'aria-describedby': 'push-target' });
  const submit = h('button', { type: 'submit', id: 'push-submit', class: 'btn btn-primary', text: 'Push image' });
  const reloadImgs = h('button', { type: 'button', class: 'btn btn-small btn-ghost', text: 'Reload', 'aria-label': 'Reload image list' });
  const imgHint = h('p', { class: 'hint', id: 'push-image-hint' });
  const envHint = h('p', { class: 'hint', id: 'push-env-hint', dataset: { tone: 'bad' } });
  const regHint = h('p', { class: 'hint', id: 'push-registry-hint' });
  const target = h('p', { class: 'hint target', id: 'push-target' });
  const formErr = h('p', { id: 'push-error', class: 'form-error', role: 'alert', hidden: true });

  const form = h('form', { class: 'card form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'push-env', text: 'Environment' }), envSel, envHint),
    h('div', { class: 'field' }, h('div', { class: 'label-row' }, h('label', { for: 'push-image', text: 'Image' }), reloadImgs), imgSel, imgHint),
    h('div', { class: 'field' }, h('label', { for: 'push-registry', text: 'Registry' }), regSel, regHint),
    h('div', { class: 'field' }, h('label', { for: 'push-tag' }, 'New tag ', h('span', { class: 'muted', text: '(optional)' })), tagIn, target),
    formErr,
    h('div', { class: 'form-actions' }, submit));

  const stateEl = h('p', { id: 'push-state', class: 'push-state', dataset: { state: 'idle' }, role: 'status', 'aria-live': 'polite' });
  const fill = h('div', { class: 'bar-fill' });
  const overall = h('div', { id: 'push-progress', class: 'bar', role: 'progressbar', 'aria-label': 'Overall push progress', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0', dataset: { percent: '0' } }, fill);
  const pctText = h('span', { class: 'pct', text: '0 %' });
  const phase = h('p', { class: 'phase muted' });
  const layersEl = h('div', { class: 'layers', 'aria-label': 'Layers' });
  const logEl = h('pre', { class: 'log', tabindex: '0' });
  const jobTitle = h('h2', { text: 'Progress' });
  const panel = h('section', { class: 'card push-panel', hidden: true, 'aria-labelledby': 'push-panel-title' },
    h('div', { class: 'panel-head' }, jobTitle, pctText), overall, stateEl, phase, layersEl,
    h('details', { class: 'log-box' }, h('summary', { text: 'Raw progress' }), logEl));
  jobTitle.id = 'push-panel-title';

  const el = h('div', { class: 'page' },
    pageHead('Push image'),
    h('p', { class: 'muted', text: 'Tag an image on an environment\'s Docker host and push it to a configured registry. The push runs on that host; progress streams back here.' }),
    h('div', { class: 'push-grid' }, form, panel));

  /* --- form filling --- */
  function fillEnvs() {
    const prev = envSel.value;
    const envs = [...state.envs.values()].sort((a, b) => a.id - b.id);
    const usable = (e) => e.type === 'local' || e.status === 'online';
    envSel.replaceChildren(h('option', { value: '', text: envs.length ? 'Choose an environment…' : 'No environments', disabled: true }),
      ...envs.map((e) => h('option', { value: String(e.id), disabled: !usable(e), text: usable(e) ? e.name : `${e.name} (${e.status})` })));
    const ok = envs.filter(usable);
    if (prev && envs.some((e) => String(e.id) === prev)) envSel.value = prev;
    else if (ok.length === 1) envSel.value = String(ok[0].id);
    else envSel.value = '';
    const cur = state.envs.get(Number(envSel.value));
    envHint.textContent = cur && !usable(cur) ? `${cur.name} is ${cur.status}: its agent must be connected to push.` : '';
    if (envSel.value !== (imagesFor == null ? '' : String(imagesFor))) loadImages();
  }

  async function loadImages() {
    const id = envSel.value;
    imagesFor = id ? Number(id) : null;
    images = [];
    imgSel.replaceChildren(h('option', { value: '', text: id ? 'Loading images…' : 'Choose an environment first' }));
    imgSel.disabled = true;
    imgHint.textContent = '';
    updateTarget();
    if (!id) return;
    try {
      const list = await api('GET', `api/environments/${encodeURIComponent(id)}/docker/images/json`);
      if (envSel.value !== id) return;
      images = Array.isArray(list) ? list : [];
    } catch (ex) {
      if (envSel.value !== id) return;
      imgSel.replaceChildren(h('option', { value: '', text: 'Images unavailable' }));
      imgHint.textContent = `Could not list images: ${ex.message}`;
      imgHint.dataset.tone = 'bad';
      return;
    }
    const opts = [];
    for (const img of images) {
      const tags = (Array.isArray(img.RepoTags) ? img.RepoTags : []).filter((t) => t && t !== '<none>:<none>');
      const short = String(img.Id || '').replace(/^sha256:/, '').slice(0, 12);
      const title = `${img.Id}${typeof img.Size === 'number' ? ` · ${fmtBytes(img.Size)}` : ''}`;
      if (tags.length) for (const t of tags) opts.push(h('option', { value: img.Id, dataset: { name: t }, title, text: t }));
      else opts.push(h('option', { value: img.Id, dataset: { name: '' }, title, text: `${short} (untagged)` }));
    }
    opts.sort((a, b) => a.textContent.localeCompare(b.textContent));
    imgSel.replaceChildren(h('option', { value: '', text: opts.length ? 'Choose an image…' : 'No images on this host', disabled: true }), ...opts);
    imgSel.value = '';
    imgSel.disabled = !opts.length;
    delete imgHint.dataset.tone;
    imgHint.textContent = opts.length ? `${images.length} image${images.length === 1 ? '' : 's'} on this host.` : '';
    updateTarget();
  }

  async function loadRegistries() {
    regHint.textContent = '';
    try {
      const list = await api('GET', 'api/registries');
      registries = Array.isArray(list) ? list : [];
    } catch (ex) {
      regSel.replaceChildren(h('option', { value: '', text: 'Registries unavailable' }));
      regHint.textContent = `Could not list registries: ${ex.message}`;
      regHint.dataset.tone = 'bad';
      return;
    }
    delete regHint.dataset.tone;
    const prev = regSel.value;
    regSel.replaceChildren(h('option', { value: '', text: registries.length ? 'Choose a registry…' : 'No registries configured', disabled: true }),
      ...registries.map((r) => h('option', { value: String(r.id), title: r.url, text: `${r.name} — ${registryHost(r.url)}${r.username ? ` (as ${r.username})` : ''}` })));
    if (prev && registries.some((r) => String(r.id) === prev)) regSel.value = prev;
    else regSel.value = registries.length === 1 ? String(registries[0].id) : '';
    if (!registries.length) regHint.textContent = 'Add a registry to the hub before pushing.';
    updateTarget();
  }

  function selectedImage() {
    const opt = imgSel.selectedOptions[0];
    return opt && opt.value ? { id: opt.value, name: opt.dataset.name || '' } : null;
  }

  function updateTarget() {
    const img = selectedImage();
    const reg = registries.find((r) => String(r.id) === regSel.value);
    const name = tagIn.value.trim() || (img && img.name ? stripRegistry(img.name) : '');
    if (!reg || !name) { target.textContent = img && !img.name && !tagIn.value.trim() ? 'This image has no tag: enter a new tag.' : ''; return; }
    const host = registryHost(reg.url);
    const hub = /(^|\.)docker\.io$|hub\.docker\.com/.test(host.split('/')[0]);
    target.replaceChildren('Pushes as ', h('code', { text: hub ? name : `${host}/${name}` }));
  }

  envSel.addEventListener('change', loadImages);
  imgSel.addEventListener('change', updateTarget);
  regSel.addEventListener('change', updateTarget);
  tagIn.addEventListener('input', updateTarget);
  reloadImgs.addEventListener('click', loadImages);

  /* --- job progress --- */
  function setPercent(p) {
    const v = Math.max(0, Math.min(100, Math.round(p)));
    overall.dataset.percent = String(v);
    overall.setAttribute('aria-valuenow', String(v));
    fill.style.width = `${v}%`;
    pctText.textContent = `${v} %`;
  }

  function setState(s, text) {
    stateEl.dataset.state = s;
    stateEl.textContent = text;
    panel.dataset.state = s;
  }

  function log(line) {
    logEl.append(line + '\n');
    while (logEl.childNodes.length > 300) logEl.firstChild.remove();
  }

  function resetPanel(title) {
    panel.hidden = false;
    jobTitle.textContent = title;
    layersEl.replaceChildren();
    logEl.replaceChildren();
    phase.textContent = '';
    setPercent(0);
  }

  function layerRow(id) {
    const fillL = h('div', { class: 'bar-fill' });
    const bar = h('div', { class: 'bar bar-thin', role: 'progressbar', 'aria-label': `Layer ${id}`, 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0' }, fillL);
    const status = h('span', { class: 'layer-status' });
    const bytes = h('span', { class: 'layer-bytes muted' });
    const row = h('div', { class: 'layer', dataset: { layerId: id } }, h('code', { class: 'layer-id', text: id }), status, bytes, bar);
    layersEl.append(row);
    return { row, bar, fill: fillL, status, bytes, pct: 0 };
  }

  function recompute() {
    if (!job) return;
    const ls = [...job.layers.values()];
    const p = ls.length ? 5 + 94 * (ls.reduce((s, l) => s + l.pct, 0) / ls.length / 100) : job.phasePct;
    setPercent(Math.max(p, job.phasePct));
  }

  function onLayer(d) {
    let l = job.layers.get(d.id);
    if (!l) {
      if (job.layers.size >= 500) return;
      l = layerRow(String(d.id));
      job.layers.set(d.id, l);
    }
    const st = String(d.status || '');
    const pd = d.progressDetail || {};
    if (DONE_LAYER.test(st)) l.pct = 100;
    else if (/^pushing/i.test(st) && pd.total > 0) l.pct = Math.min(100, (pd.current / pd.total) * 100);
    l.status.textContent = st;
    l.bytes.textContent = pd.total > 0 && !DONE_LAYER.test(st) ? `${fmtBytes(pd.current || 0)} / ${fmtBytes(pd.total)}` : '';
    l.row.dataset.done = l.pct >= 100 ? 'yes' : 'no';
    l.fill.style.width = `${l.pct}%`;
    l.bar.setAttribute('aria-valuenow', String(Math.round(l.pct)));
    recompute();
  }

  function finish(ok, text) {
    if (!job || job.done) return;
    job.done = true;
    if (job.src) job.src.close();
    if (ok) {
      for (const l of job.layers.values()) if (l.pct < 100) { l.pct = 100; l.fill.style.width = '100%'; l.row.dataset.done = 'yes'; }
      setPercent(100);
    }
    setState(ok ? 'complete' : 'error', text);
    phase.textContent = '';
    submit.disabled = false;
  }

  function onProgress(d) {
    if (!job || job.done || !d || typeof d !== 'object') return;
    if (d.status === 'complete') {
      log(d.message || 'complete');
      finish(true, `Pushed to ${d.targetTag || d.message || 'registry'}`);
      return;
    }
    if (d.status === 'error') {
      log(`error: ${d.error || d.message || ''}`);
      finish(false, d.error || d.message || 'The push failed.');
      return;
    }
    if (d.id != null && d.status) {
      onLayer(d);
      if (!d.progressDetail || !d.progressDetail.total) log(`${d.id}: ${d.status}`);
      return;
    }
    if (d.status === 'tagging') job.phasePct = Math.max(job.phasePct, 2);
    if (d.status === 'pushing') job.phasePct = Math.max(job.phasePct, 5);
    const text = d.message || d.status || d.error || (d.aux && d.aux.Digest ? `digest ${d.aux.Digest}` : '');
    if (text) { phase.textContent = text; log(text); }
    recompute();
  }

  function watch(jobId) {
    const src = new EventSource(`api/jobs/${encodeURIComponent(jobId)}`);
    job.src = src;
    let errors = 0;
    const onData = (e) => {
      errors = 0;
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      onProgress(msg && typeof msg === 'object' && 'data' in msg ? msg.data : msg);
    };
    src.addEventListener('data', onData);
    src.addEventListener('message', onData);
    src.onerror = () => {
      if (!job || job.src !== src || job.done) return;
      errors++;
      if (src.readyState === EventSource.CLOSED || errors > 5) {
        finish(false, 'Lost the progress stream before the push finished. Check the registry to see whether the image arrived.');
      } else {
        phase.textContent = 'Progress stream interrupted; reconnecting…';
      }
    };
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formErr.hidden = true;
    if (job && !job.done) return;
    const img = selectedImage();
    const problems = [];
    if (!envSel.value) problems.push('an environment');
    if (!img) problems.push('an image');
    if (!regSel.value) problems.push('a registry');
    if (problems.length) {
      formErr.textContent = `Choose ${problems.join(', ')}.`;
      formErr.hidden = false;
      return;
    }
    const newTag = tagIn.value.trim();
    if (!img.name && !newTag) {
      formErr.textContent = 'This image has no tag. Enter a new tag, e.g. app:v1.0.';
      formErr.hidden = false;
      tagIn.focus();
      return;
    }
    if (newTag && /\s/.test(newTag)) {
      formErr.textContent = 'A tag cannot contain spaces.';
      formErr.hidden = false;
      tagIn.focus();
      return;
    }
    const body = { imageId: img.id, imageName: img.name, registryId: Number(regSel.value) };
    if (newTag) body.newTag = newTag;
    submit.disabled = true;
    const reg = registries.find((r) => String(r.id) === regSel.value);
    resetPanel(`${img.name || img.id.slice(7, 19)} → ${reg ? reg.name : 'registry'}`);
    job = { id: null, src: null, layers: new Map(), phasePct: 0, done: false };
    setState('running', 'Starting push…');
    let res;
    try {
      res = await api('POST', `api/images/push?env=${encodeURIComponent(envSel.value)}`, body);
    } catch (ex) {
      formErr.textContent = ex.message;
      formErr.hidden = false;
      finish(false, ex.message);
      return;
    }
    if (!res || !res.jobId) {
      // A hub that answers synchronously sends the final result directly.
      if (res && (res.status === 'complete' || res.status === 'error')) onProgress(res);
      else finish(false, 'The hub did not return a job id.');
      return;
    }
    job.id = res.jobId;
    setState('running', 'Pushing…');
    watch(res.jobId);
  });

  fillEnvs();
  loadRegistries();
  updateTarget();

  return {
    el, title: 'Push image',
    focus: envSel,
    enter() { fillEnvs(); loadRegistries(); },
    update(kind) { if (kind === 'envs' || kind === 'env') fillEnvs(); },
    reset() { if (job && job.src) job.src.close(); job = null; },
  };
}

function viewPush() {
  if (!pushView) pushView = createPushView();
  else pushView.enter();
  return pushView;
}

/* ------------------------------------------------------------------- router */

function route() {
  if (!state.authed) return;
  const hash = location.hash || '#/';
  let next;
  let m;
  if ((m = /^#\/env\/(\d+)$/.exec(hash))) next = viewEnvironment(Number(m[1]));
  else if (hash === '#/add') next = viewAdd();
  else if (hash === '#/push') next = viewPush();
  else next = viewEnvironments();
  if (view && view.destroy) view.destroy();
  view = next;
  const host = $('#view');
  host.replaceChildren(next.el);
  document.title = `${next.title} · Mooring`;
  const section = hash.startsWith('#/push') ? 'push' : hash.startsWith('#/add') ? 'add' : 'envs';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (route.navigated) {
    const target = next.focus || next.el.querySelector('h1');
    if (target) target.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  route.navigated = true;
}

/* --------------------------------------------------------------------- auth */

function showLogin(message) {
  state.authed = false;
  $('#topbar').hidden = true;
  $('#view').hidden = true;
  $('#login').hidden = false;
  const err = $('#login-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('#login-key').focus();
}

function onUnauthorized() {
  if (!state.authed && !$('#login').hidden) return;
  const wasAuthed = state.authed;
  stopEvents();
  if (pushView) { pushView.reset(); pushView = null; }
  if (view && view.destroy) view.destroy();
  view = null;
  state.envs.clear();
  state.envsLoaded = false;
  state.events = [];
  state.seen.clear();
  showLogin(wasAuthed ? 'Your session has ended. Log in again.' : '');
}

async function startApp(envsReady = false) {
  state.authed = true;
  $('#login').hidden = true;
  $('#topbar').hidden = false;
  $('#view').hidden = false;
  route.navigated = false;
  route();
  await Promise.all([envsReady ? notify('envs') : loadEnvs(), fillEvents(false)]);
  if (state.authed) startEvents();
}

async function login(e) {
  e.preventDefault();
  const input = $('#login-key');
  const btn = $('#login-submit');
  const err = $('#login-error');
  const key = input.value.trim();
  err.hidden = true;
  if (!key) { err.textContent = 'Enter your API key.'; err.hidden = false; input.focus(); return; }
  btn.disabled = true;
  try {
    await api('POST', 'api/session', { key });
    input.value = '';
    await startApp();
  } catch (ex) {
    err.textContent = ex.status === 401 || ex.status === 403 ? 'That API key was not accepted.' : ex.message;
    err.hidden = false;
    input.select();
  } finally {
    btn.disabled = false;
  }
}

async function logout() {
  try { await api('DELETE', 'api/session'); } catch { /* logged out locally anyway */ }
  state.authed = true;   // so onUnauthorized resets everything
  onUnauthorized();
  showLogin('');
}

async function loadHealth() {
  const el = $('#health');
  try {
    const res = await fetch('api/health', { cache: 'no-store' });
    const h2 = await res.json();
    el.textContent = `mooring-hub ${h2.version ? 'v' + h2.version.replace(/^v/, '') : ''} · ${h2.status || res.status}`;
    el.dataset.state = h2.status === 'ok' ? 'ok' : 'bad';
  } catch {
    el.textContent = 'mooring-hub · unreachable';
    el.dataset.state = 'bad';
  }
}

/* --------------------------------------------------------------------- boot */

async function boot() {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  setInterval(tickAges, 1000);
  setInterval(() => { if (state.authed) loadEnvs(); }, 60000);   // safety net next to the event stream
  setInterval(loadHealth, 60000);
  loadHealth();
  try {
    const list = await api('GET', 'api/environments');
    state.envs = new Map((Array.isArray(list) ? list : []).map((e) => [e.id, e]));
    state.envsLoaded = true;
    await startApp(true);
  } catch (ex) {
    if (ex.status !== 401) showLogin(`Cannot load the dashboard: ${ex.message}`);
  }
}

boot();
