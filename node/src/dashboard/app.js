// DistributeAI node dashboard: plain DOM, no libraries, same-origin API only.
// Everything from the API is inserted as text (createElement / textContent), never as HTML.
'use strict';
(function () {
  const API = 'api/v1/';
  const STATUSES = ['pending', 'bidding', 'queued', 'running', 'verifying', 'completed', 'failed', 'cancelled'];
  const FINAL = new Set(['completed', 'failed', 'cancelled']);
  const PHASES = [['bidding', 'bidding_ms', 'bidding'], ['execution', 'execution_ms', 'execution'],
    ['verification', 'verification_ms', 'verification'], ['output fetch', 'fetch_ms', 'fetch']];
  const HEX64 = /^[0-9a-f]{64}$/i;
  const OUTPUT_LIMIT = 64 * 1024;
  const MAX_JOB_ROWS = 500;
  const SVGNS = 'http://www.w3.org/2000/svg';

  // A node whose operator created an API token serves this page to anyone but its API only
  // with the token. Opened as http://<address>/#token=<token>, the page keeps the token in a
  // same-site cookie, which its requests and its event stream then carry; the address bar
  // forgets it at once.
  (function takeToken() {
    const m = /(?:^#|&)token=([0-9a-f]{64})(?:&|$)/i.exec(location.hash);
    if (!m) return;
    document.cookie = 'distributeai_token=' + m[1] + '; path=/; SameSite=Strict';
    history.replaceState(null, '', location.pathname + location.search);
  })();

  // ---------------------------------------------------------------- pure helpers

  /** Splits a command line into argv: whitespace separates; '…' and "…" group; \ escapes. */
  function splitCommand(text) {
    const out = [];
    let cur = '', inWord = false, quote = null;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quote === "'") {
        if (c === "'") quote = null; else cur += c;
      } else if (quote === '"') {
        if (c === '"') quote = null;
        else if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) cur += text[++i];
        else cur += c;
      } else if (c === "'" || c === '"') {
        quote = c; inWord = true;
      } else if (c === '\\' && i + 1 < text.length) {
        cur += text[++i]; inWord = true;
      } else if (/\s/.test(c)) {
        if (inWord) { out.push(cur); cur = ''; inWord = false; }
      } else {
        cur += c; inWord = true;
      }
    }
    if (quote) throw new Error('command: unterminated ' + (quote === '"' ? 'double' : 'single') + ' quote');
    if (inWord) out.push(cur);
    return out;
  }

  /** Quotes one argument so that splitCommand gives it back. */
  function quoteArg(a) {
    return /^[\w@%+=:,./-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'";
  }

  function parseEnv(text) {
    const env = {};
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      const eq = line.indexOf('=');
      if (eq <= 0) throw new Error('environment line ' + (i + 1) + ': expected KEY=VALUE');
      env[line.slice(0, eq).trim()] = line.slice(eq + 1);
    });
    return env;
  }

  /** A number when the text is one, else the text itself, so the node names the bad field. */
  function numOrRaw(t) {
    return /^-?\d+(\.\d+)?$/.test(t) ? Number(t) : t;
  }

  /** The JobSpec JSON from the form's raw values: only the fields that were filled. */
  function buildSpec(v) {
    const t = (k) => (v[k] == null ? '' : String(v[k]).trim());
    const spec = {};
    if (t('image')) spec.image = t('image');
    if (t('image_digest')) spec.image_digest = t('image_digest');
    if (t('command')) spec.command = splitCommand(String(v.command));
    if (t('env')) spec.env = parseEnv(String(v.env));
    const res = {};
    for (const k of ['cpus', 'memory_mb', 'gpus']) if (t(k)) res[k] = numOrRaw(t(k));
    if (Object.keys(res).length) spec.resources = res;
    for (const k of ['timeout_s', 'redundancy', 'consensus', 'reward']) if (t(k)) spec[k] = numOrRaw(t(k));
    if (v.network === true || v.network === 'on') spec.network = true;
    return spec;
  }

  /** The relay's PeerId in a circuit address `…/p2p/<relay>/p2p-circuit…`. */
  function relayOf(addr) {
    const m = /\/p2p\/([^/]+)\/p2p-circuit/.exec(addr || '');
    return m ? m[1] : null;
  }

  /** offline | direct | holepunched | relayed */
  function peerKind(p) {
    if (!p.connected) return 'offline';
    const cs = p.connections || [];
    const direct = cs.filter((c) => c.route === 'direct');
    if (direct.length) return direct.some((c) => c.hole_punched) ? 'holepunched' : 'direct';
    if (p.route === 'relayed' || cs.length) return 'relayed';
    return 'direct';
  }

  function relayVia(p) {
    for (const c of p.connections || []) {
      if (c.route === 'relayed') { const r = relayOf(c.address); if (r) return r; }
    }
    return null;
  }

  /** Peers in ring order: each peer followed by those reached through it; offline peers last. */
  function meshOrder(peers) {
    const byId = new Map(peers.map((p) => [p.peer_id, p]));
    const children = new Map(), top = [], offline = [];
    for (const p of peers) {
      const kind = peerKind(p);
      if (kind === 'offline') { offline.push(p); continue; }
      const via = kind === 'relayed' ? relayVia(p) : null;
      if (via && via !== p.peer_id && byId.has(via) && peerKind(byId.get(via)) !== 'offline') {
        if (!children.has(via)) children.set(via, []);
        children.get(via).push(p);
      } else top.push(p);
    }
    const order = [], seen = new Set();
    const add = (p) => {
      if (seen.has(p.peer_id)) return;
      seen.add(p.peer_id); order.push(p);
      for (const c of children.get(p.peer_id) || []) add(c);
    };
    top.forEach(add);
    peers.forEach((p) => { if (peerKind(p) !== 'offline') add(p); }); // relay cycles
    offline.forEach(add);
    return order;
  }

  /** Counts of timestamps per minute, oldest first; the last bucket ends at `now`. */
  function perMinute(times, now, minutes) {
    const buckets = new Array(minutes).fill(0);
    for (const t of times) {
      const age = Math.max(0, now - t);
      const i = minutes - 1 - Math.floor(age / 60000);
      if (i >= 0) buckets[i]++;
    }
    return buckets;
  }

  /** The smallest 1, 2 or 5 × 10^k not below v. */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v - 1e-9) return m * p;
    return 10 * p;
  }

  function fmtMs(ms) {
    if (ms == null) return '—';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    const s = Math.round(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function fmtBytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }

  function shortPeer(id) { return id && id.length > 12 ? '…' + id.slice(-8) : id || '?'; }
  function shortHex(h) { return h ? h.slice(0, 12) : ''; }

  /** The job's phases laid end to end from submission; the running one measured to `now`. */
  function phaseSegments(job, now) {
    const t = job.timings || {};
    const segs = [];
    let at = 0, ongoing = false;
    for (const [name, key, cls] of PHASES) {
      const ms = t[key];
      if (ms != null) { segs.push({ name, cls, ms, start: at }); at += ms; } else if (!ongoing && !FINAL.has(job.status) && now != null) {
        const run = Math.max(0, now - job.submitted_at - at);
        segs.push({ name, cls, ms: run, start: at, ongoing: true });
        at += run; ongoing = true;
      }
    }
    return { segs, total: Math.max(at, t.total_ms || 0) };
  }

  /** Submission to decision, when all three phases before it are known. */
  function verdictMs(job) {
    const t = job.timings || {};
    return t.bidding_ms != null && t.execution_ms != null && t.verification_ms != null
      ? t.bidding_ms + t.execution_ms + t.verification_ms : null;
  }

  const helpers = { splitCommand, quoteArg, parseEnv, buildSpec, relayOf, peerKind, relayVia, meshOrder,
    perMinute, niceMax, fmtMs, fmtBytes, shortPeer, phaseSegments, verdictMs };
  if (typeof module === 'object' && module.exports) module.exports = helpers;
  if (typeof document === 'undefined') return;

  // ---------------------------------------------------------------- DOM helpers

  const $ = (sel) => document.querySelector(sel);

  function setAttrs(e, a) {
    if (!a) return;
    for (const k of Object.keys(a)) {
      const v = a[k];
      if (v == null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function kids(e, list) {
    for (const k of list.flat(Infinity)) {
      if (k == null || k === false) continue;
      e.append(typeof k === 'object' ? k : String(k));
    }
    return e;
  }
  /** Replaces e's children; null and false are skipped (replaceChildren would print "null"). */
  function put(e, ...children) {
    e.replaceChildren();
    return kids(e, children);
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    return kids(e, children);
  }
  function sv(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    return kids(e, children);
  }
  const td = (...c) => el('td', null, ...c);
  const muted = (text) => el('p', { class: 'muted' }, text);
  const cls = (s) => String(s || 'unknown').replace(/[^a-z_-]/gi, '');
  const badge = (text, kind) => el('span', { class: 'badge st-' + cls(kind || text) }, text);
  const peerSpan = (id, me) => el('span', { class: 'mono', title: id }, shortPeer(id), me && id === me ? ' (you)' : null);
  const jobLink = (id, text) => el('a', { href: HEX64.test(id) ? '#/jobs/' + id : '#/jobs', class: 'mono', title: id }, text || shortHex(id));

  function fillKv(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) {
      if (v == null || v === '') continue;
      dl.append(el('dt', null, k), el('dd', null, v));
    }
  }

  /** Updates a tbody in place: one row per item, keyed by `attr`, in the items' order. */
  function syncRows(tbody, items, attr, keyOf, fill) {
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) old.set(tr.getAttribute(attr), tr);
    let prev = null;
    for (const item of items) {
      const k = keyOf(item);
      let tr = old.get(k);
      if (tr) old.delete(k); else { tr = document.createElement('tr'); tr.setAttribute(attr, k); }
      fill(tr, item);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of old.values()) tr.remove();
  }

  // ---------------------------------------------------------------- state and loading

  const state = {
    node: null, nodeAt: 0, peers: [], jobs: [], stats: null, ledger: null,
    detailId: null, detail: null, logs: null, results: new Map(),
    errors: {}, live: false,
  };
  const now = () => Date.now();

  async function api(path, opts) {
    const res = await fetch(API + path, Object.assign({ cache: 'no-store', headers: { Accept: 'application/json' } }, opts));
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!res.ok) {
      const err = new Error(body && body.error ? body.error : 'HTTP ' + res.status);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  const loaders = {
    async node() { state.node = await api('node'); state.nodeAt = performance.now(); renderNode(); renderMesh(); renderLedger(); },
    async peers() { state.peers = (await api('peers')) || []; renderPeers(); renderMesh(); },
    async jobs() {
      state.jobs = ((await api('jobs')) || []).sort((a, b) => b.submitted_at - a.submitted_at);
      renderJobs(); renderCharts();
    },
    async stats() { state.stats = await api('stats'); renderStats(); },
    async ledger() { state.ledger = await api('ledger'); renderLedger(); renderNode(); },
    detail: loadDetail,
  };
  const ALL = ['node', 'peers', 'jobs', 'stats', 'ledger', 'detail'];
  const wanted = new Set(), running = {}, again = {};
  let flushTimer = null;

  function want(...keys) {
    for (const k of keys) (k === 'all' ? ALL : [k]).forEach((x) => wanted.add(x));
    if (!flushTimer) flushTimer = setTimeout(flush, 200);
  }
  function flush() {
    flushTimer = null;
    const keys = Array.from(wanted);
    wanted.clear();
    keys.forEach(run);
  }
  async function run(k) {
    if (running[k]) { again[k] = true; return; }
    running[k] = true;
    try {
      await loaders[k]();
      delete state.errors[k];
    } catch (e) {
      state.errors[k] = e.message || String(e);
    } finally {
      running[k] = false;
      renderErrors();
      if (again[k]) { again[k] = false; run(k); }
    }
  }

  function renderErrors() {
    const box = $('#error');
    const msgs = Object.keys(state.errors).map((k) => 'Could not load ' + k + ': ' + state.errors[k]);
    box.textContent = msgs.join(' · ');
    box.hidden = !msgs.length;
  }

  // ---------------------------------------------------------------- live events

  let source = null;
  function setLive(open) {
    state.live = open;
    $('#live').setAttribute('data-state', open ? 'open' : 'connecting');
    $('#live-text').textContent = open ? 'live' : 'connecting…';
  }

  function connectEvents() {
    setLive(false);
    if (typeof EventSource === 'undefined') return;
    const es = source = new EventSource(API + 'events');
    es.onopen = () => { setLive(true); want('all'); };
    es.onerror = () => {
      setLive(false);
      if (es.readyState === EventSource.CLOSED) { // the browser gave up: retry ourselves
        es.close();
        if (source === es) setTimeout(connectEvents, 3000);
      }
    };
    es.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      onEvent(ev);
    };
  }

  function onEvent(ev) {
    if (!ev || typeof ev !== 'object') return;
    if (ev.type === 'job' && typeof ev.id === 'string') {
      const row = $('#jobs-table tbody').querySelector('tr[data-job-id="' + cls(ev.id) + '"]');
      const job = state.jobs.find((j) => j.id === ev.id);
      if (job && typeof ev.status === 'string') job.status = ev.status;
      if (row && job) fillJobRow(row, job);
      want('jobs', 'stats');
      if (FINAL.has(ev.status)) want('ledger', 'peers');
      if (ev.id === state.detailId) want('detail');
    } else if (ev.type === 'peers') {
      want('peers', 'node');
    } else if (ev.type === 'resync') {
      want('all');
    }
  }

  // ---------------------------------------------------------------- formatting

  function fmtTime(ms) {
    if (!ms) return '—';
    const d = new Date(ms), today = new Date(now());
    const t = d.toLocaleTimeString([], { hour12: false });
    return d.toDateString() === today.toDateString() ? t : d.toLocaleDateString() + ' ' + t;
  }
  function ago(ms) {
    if (!ms) return '—';
    const s = Math.max(0, Math.round((now() - ms) / 1000));
    if (s < 5) return 'now';
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }
  function fmtUptime(s) {
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
  }
  function offers(c) {
    if (!c) return '—';
    const parts = [c.cpus + ' CPU', c.memory_mb + ' MiB'];
    if (c.gpus && c.gpus.length) parts.push(c.gpus.length + ' GPU');
    if (c.region) parts.push(c.region);
    return parts.join(' · ');
  }
  const cmdText = (argv) => (argv && argv.length ? argv.map(quoteArg).join(' ') : '(image default)');
  const kindLabel = { direct: 'direct', holepunched: 'hole-punched', relayed: 'relayed', offline: 'not connected' };

  // ---------------------------------------------------------------- overview

  function uptimeNow() {
    return state.node ? state.node.uptime_s + Math.floor((performance.now() - state.nodeAt) / 1000) : 0;
  }

  function renderNode() {
    const n = state.node;
    if (!n) return;
    $('#node-peer-id').textContent = n.peer_id;
    $('#node-short').textContent = shortPeer(n.peer_id);
    const relays = (n.relays || []).map((r) => el('div', null, peerSpan(r.peer_id), ' ',
      badge(r.reserved ? 'reserved' : 'asking', r.reserved ? 'public' : 'unknown')));
    const images = (n.capabilities && n.capabilities.images) || [];
    fillKv($('#node-kv'), [
      ['Role', n.role + (n.worker ? ', worker' : ', not a worker')],
      ['Version', n.version],
      ['Uptime', el('span', { id: 'uptime' }, fmtUptime(uptimeNow()))],
      ['Reachability', badge(n.reachability)],
      ['Connected', n.connected_peers + ' peer' + (n.connected_peers === 1 ? '' : 's') + ' (' + state.peers.length + ' known)'],
      ['Offers', n.worker ? offers(n.capabilities) : 'nothing: it runs no jobs'],
      ['Images', images.length ? el('span', { title: images.map((i) => i.reference).join('\n') }, images.length + ' local') : 'none local'],
      ['Relays', relays.length ? relays : null],
    ]);
    const list = (title, addrs) => (addrs && addrs.length
      ? [el('h3', null, title), el('ul', { class: 'addrs mono' }, addrs.map((a) => el('li', null, a)))] : []);
    put($('#node-addrs'), ...list('Listening', n.listen_addrs), ...list('External', n.external_addrs),
      ...list('Announced', n.announced_addrs));
    // Standing
    const me = state.ledger && state.ledger.peers.find((p) => p.peer_id === n.peer_id);
    fillKv($('#standing'), me ? [
      ['Reputation', String(me.reputation)], ['Credits', String(me.credits)],
      ['Results', me.agreed + ' agreed · ' + me.disagreed + ' disagreed · ' + me.failed + ' failed · ' + me.silent + ' silent'],
      ['Selection weight', String(me.weight)],
    ] : [['Standing', state.ledger ? 'no verdict names this node yet' : '…']]);
  }

  function renderStats() {
    const s = state.stats;
    if (!s) return;
    const counts = s.jobs || {};
    const names = STATUSES.concat(Object.keys(counts).filter((k) => !STATUSES.includes(k)));
    put($('#stats'),
      el('div', { class: 'chips' }, names.map((k) => el('span', { class: 'chip' }, badge(k), ' ', String(counts[k] || 0)))),
      muted('As a worker: ' + s.work_accepted + ' assignments accepted, ' + s.work_running + ' running now.'));
  }

  function chartBox(box, H) {
    const W = Math.max(280, Math.floor(box.clientWidth || 600));
    return { W, H, svg: sv('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img' }) };
  }

  function yAxis(svg, m, W, H, max, fmt) {
    for (const v of [0, max / 2, max]) {
      const y = H - m.b - ((H - m.t - m.b) * v) / max;
      svg.append(sv('line', { class: 'gridline', x1: m.l, x2: W - m.r, y1: y, y2: y }),
        sv('text', { x: m.l - 4, y: y + 4, 'text-anchor': 'end' }, fmt(v)));
    }
  }

  function renderCharts() {
    if ($('#view-overview').hidden) return;
    // Jobs per minute.
    const rate = $('#chart-rate');
    const c1 = chartBox(rate, 150);
    const counts = perMinute(state.jobs.map((j) => j.submitted_at), now(), 30);
    const max1 = niceMax(Math.max(1, ...counts));
    const m1 = { l: 34, r: 8, t: 10, b: 20 };
    c1.svg.setAttribute('aria-label', 'Jobs submitted per minute, last 30 minutes');
    yAxis(c1.svg, m1, c1.W, c1.H, max1, (v) => (Number.isInteger(v) ? String(v) : ''));
    const bw = (c1.W - m1.l - m1.r) / counts.length, ih = c1.H - m1.t - m1.b;
    counts.forEach((n, i) => {
      const h = (ih * n) / max1;
      c1.svg.append(sv('rect', { class: 'bar', x: m1.l + i * bw + 1, y: c1.H - m1.b - h, width: Math.max(1, bw - 2), height: h },
        sv('title', null, n + ' job' + (n === 1 ? '' : 's') + ', ' + (29 - i) + '–' + (30 - i) + ' min ago')));
    });
    [['−30 min', m1.l, 'start'], ['−15 min', m1.l + (c1.W - m1.l - m1.r) / 2, 'middle'], ['now', c1.W - m1.r, 'end']]
      .forEach(([t, x, a]) => c1.svg.append(sv('text', { x, y: c1.H - 5, 'text-anchor': a }, t)));
    put(rate, c1.svg);

    // Latency per recent job.
    const lat = $('#chart-latency');
    const recent = state.jobs.filter((j) => j.timings && (j.timings.execution_ms != null || verdictMs(j) != null))
      .slice(0, 30).reverse();
    if (!recent.length) { put(lat, muted('No job submitted through this node has reached execution yet.')); return; }
    const c2 = chartBox(lat, 170);
    const m2 = { l: 56, r: 8, t: 10, b: 10 };
    const max2 = niceMax(Math.max(1, ...recent.map((j) => Math.max(j.timings.execution_ms || 0, verdictMs(j) || 0))));
    c2.svg.setAttribute('aria-label', 'Execution and verdict latency of recent jobs');
    yAxis(c2.svg, m2, c2.W, c2.H, max2, fmtMs);
    const slot = Math.min(48, (c2.W - m2.l - m2.r) / recent.length), ih2 = c2.H - m2.t - m2.b;
    recent.forEach((j, i) => {
      const x = m2.l + i * slot, v = verdictMs(j), e = j.timings.execution_ms;
      const a = sv('a', { href: '#/jobs/' + cls(j.id) }, sv('title', null,
        'job ' + shortHex(j.id) + ' (' + j.status + ')\nexecution ' + fmtMs(e) + '\ntime to verdict ' + fmtMs(v)));
      if (v != null) a.append(sv('rect', { class: 'lat-v', x: x + 1, width: Math.max(1, slot - 2), y: c2.H - m2.b - (ih2 * v) / max2, height: (ih2 * v) / max2 }));
      if (e != null) a.append(sv('rect', { class: 'lat-e', x: x + slot * 0.25, width: Math.max(1, slot * 0.5), y: c2.H - m2.b - (ih2 * e) / max2, height: (ih2 * e) / max2 }));
      c2.svg.append(a);
    });
    put(lat, c2.svg);
  }

  // ---------------------------------------------------------------- peers and mesh

  function renderPeers() {
    const me = state.node && state.node.peer_id;
    const tbody = $('#peers-table tbody');
    const connected = state.peers.filter((p) => p.connected).length;
    $('#peers-count').textContent = connected + ' connected, ' + state.peers.length + ' known';
    $('#peers-empty').hidden = state.peers.length > 0;
    syncRows(tbody, state.peers, 'data-peer-id', (p) => p.peer_id, (tr, p) => {
      const kind = peerKind(p), via = relayVia(p);
      const conns = p.connections || [];
      const addrs = conns.length ? conns.map((c) => c.address + ' (' + c.transport + ', ' + c.direction + ')') : p.addresses || [];
      const transports = Array.from(new Set(conns.map((c) => c.transport))).join(', ');
      tr.className = kind === 'offline' ? 'offline' : '';
      put(tr,
        td(peerSpan(p.peer_id, me)),
        td(badge(kindLabel[kind], kind), via && kind === 'relayed' ? [' via ', peerSpan(via)] : null,
          transports ? el('span', { class: 'muted' }, ' ' + transports) : null),
        td(el('span', { class: 'src src-' + cls(p.source) }, p.source || 'unknown')),
        el('td', { class: 'addr mono', title: addrs.join('\n') }, addrs[0] || '—', addrs.length > 1 ? ' +' + (addrs.length - 1) : null),
        td(p.accepts_jobs ? 'yes' : 'no'),
        td(offers(p.capabilities)),
        td(String(p.reputation)),
        td(String(p.credits)),
        el('td', { title: fmtTime(p.last_seen) }, p.connected ? 'connected' : ago(p.last_seen)));
    });
  }

  function renderMesh() {
    const svg = $('#mesh');
    const C = 230, R = 140; // viewBox 460 × 460
    const order = meshOrder(state.peers);
    const n = order.length;
    const myRelays = new Set(((state.node && state.node.relays) || []).map((r) => r.peer_id));
    const pos = new Map();
    order.forEach((p, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
      pos.set(p.peer_id, { x: C + R * Math.cos(a), y: C + R * Math.sin(a), a });
    });
    const edges = sv('g', { class: 'edges' }), nodes = sv('g', { class: 'nodes' });
    for (const p of order) {
      const kind = peerKind(p);
      if (kind === 'offline') continue;
      const to = pos.get(p.peer_id), via = kind === 'relayed' ? relayVia(p) : null;
      const from = via && via !== p.peer_id && pos.has(via) ? pos.get(via) : { x: C, y: C };
      edges.append(sv('line', { class: 'edge e-' + kind, x1: from.x.toFixed(1), y1: from.y.toFixed(1), x2: to.x.toFixed(1), y2: to.y.toFixed(1) },
        sv('title', null, shortPeer(p.peer_id) + ': ' + kindLabel[kind] + (via ? ' via ' + shortPeer(via) : ''))));
    }
    // Who else is connected to whom, as each peer's latest signed announcement says; drawn
    // beneath this node's own connections, once per pair.
    const linked = new Set();
    for (const p of order) {
      for (const l of p.links || []) {
        const a = pos.get(p.peer_id), b = pos.get(l.peer_id);
        const pair = [p.peer_id, l.peer_id].sort().join(' ');
        if (!a || !b || l.peer_id === p.peer_id || linked.has(pair)) continue;
        linked.add(pair);
        edges.prepend(sv('line', { class: 'edge e-link' + (l.route === 'relayed' ? ' e-link-relayed' : ''),
          'data-link': pair, x1: a.x.toFixed(1), y1: a.y.toFixed(1), x2: b.x.toFixed(1), y2: b.y.toFixed(1) },
          sv('title', null, shortPeer(p.peer_id) + ' – ' + shortPeer(l.peer_id) + ': ' + l.route + ', as ' + shortPeer(p.peer_id) + ' announces')));
      }
    }
    const radial = n > 12;
    for (const p of order) {
      const { x, y, a } = pos.get(p.peer_id);
      const kind = peerKind(p), via = relayVia(p);
      const g = sv('g', { class: 'peer' + (kind === 'offline' ? ' offline' : ''), transform: 'translate(' + x.toFixed(1) + ',' + y.toFixed(1) + ')' },
        sv('title', null, p.peer_id + '\n' + kindLabel[kind] + (kind === 'relayed' && via ? ' via ' + via : '') +
          '\nfound by ' + (p.source || 'unknown') + (p.accepts_jobs ? '\nworker: ' + offers(p.capabilities) : '\nnot a worker') +
          (myRelays.has(p.peer_id) ? '\nour relay' : '')));
      if (myRelays.has(p.peer_id)) g.append(sv('circle', { r: 13, class: 'relay-ring' }));
      g.append(sv('circle', { r: 8, class: 'node src-' + cls(p.source) }));
      const cos = Math.cos(a), sin = Math.sin(a), label = '…' + p.peer_id.slice(-6);
      if (radial) {
        const deg = (a * 180) / Math.PI;
        g.append(cos >= 0
          ? sv('text', { transform: 'rotate(' + deg.toFixed(1) + ') translate(14,0)', 'dominant-baseline': 'central' }, label)
          : sv('text', { transform: 'rotate(' + (deg + 180).toFixed(1) + ') translate(-14,0)', 'text-anchor': 'end', 'dominant-baseline': 'central' }, label));
      } else {
        const anchor = cos > 0.3 ? 'start' : cos < -0.3 ? 'end' : 'middle';
        const dy = Math.abs(cos) <= 0.3 ? (sin < 0 ? -18 : 22) : 4;
        g.append(sv('text', { x: (14 * cos).toFixed(1), y: dy, 'text-anchor': anchor }, label));
      }
      nodes.append(g);
    }
    const self = sv('g', { transform: 'translate(' + C + ',' + C + ')' },
      sv('title', null, state.node ? 'this node\n' + state.node.peer_id : 'this node'),
      sv('circle', { r: 17, class: 'self' }), sv('text', { class: 'self-label' }, 'you'));
    if (!n) self.append(sv('text', { y: 40, 'text-anchor': 'middle', class: 'muted-fill' }, 'no peers known yet'));
    put(svg, edges, nodes, self);
    const connected = state.peers.filter((p) => p.connected).length;
    $('#mesh-count').textContent = connected + ' of ' + n + ' connected';
  }

  // ---------------------------------------------------------------- jobs

  function fillJobRow(tr, j) {
    const spec = j.spec || {};
    tr.setAttribute('data-status', j.status);
    tr.className = 'st-' + cls(j.status);
    tr.onclick = (e) => { if (!e.target.closest('a')) location.hash = '#/jobs/' + j.id; };
    put(tr,
      td(jobLink(j.id)),
      td(badge(j.status)),
      el('td', { class: 'trunc', title: spec.image }, spec.image),
      el('td', { class: 'trunc mono', title: cmdText(spec.command) }, cmdText(spec.command)),
      td(spec.redundancy + '/' + spec.consensus),
      td(String((j.bids || []).length)),
      td(fmtTime(j.submitted_at)),
      td(j.timings && j.timings.total_ms != null ? fmtMs(j.timings.total_ms) : '—'));
  }

  function renderJobs() {
    const shown = state.jobs.slice(0, MAX_JOB_ROWS);
    $('#jobs-count').textContent = state.jobs.length > shown.length
      ? 'latest ' + shown.length + ' of ' + state.jobs.length : state.jobs.length + ' total';
    $('#jobs-empty').hidden = state.jobs.length > 0;
    syncRows($('#jobs-table tbody'), shown, 'data-job-id', (j) => j.id, fillJobRow);
  }

  // ---------------------------------------------------------------- job page

  let parts = null;

  function openDetail(id) {
    if (state.detailId === id) return;
    state.detailId = id; state.detail = null; state.logs = null;
    const root = $('#job-detail');
    root.removeAttribute('data-status');
    root.removeAttribute('data-job-id');
    parts = null;
    if (!HEX64.test(id)) {
      state.detailId = null;
      put(root, el('p', { class: 'error-text' }, 'Not a job id (64 hex digits).'));
      return;
    }
    id = id.toLowerCase(); state.detailId = id;
    const known = state.jobs.find((j) => j.id === id);
    if (known) { state.detail = known; renderDetail(); } else put(root, muted('Loading…'));
    run('detail');
  }

  async function loadDetail() {
    const id = state.detailId;
    if (!id) return;
    let job;
    try {
      job = await api('jobs/' + id);
    } catch (e) {
      if (e.status !== 404 && e.status !== 400) throw e;
      if (state.detailId === id) put($('#job-detail'), el('p', { class: 'error-text' }, e.message));
      return;
    }
    const logs = await api('jobs/' + id + '/logs').catch(() => null);
    if (state.detailId !== id) return;
    state.detail = job; state.logs = logs;
    renderDetail();
  }

  function card(title, body) {
    return el('article', { class: 'card' }, el('h2', null, title), body);
  }

  function renderDetail() {
    const j = state.detail;
    if (!j) return;
    const root = $('#job-detail');
    if (!parts || root.getAttribute('data-job-id') !== j.id) {
      parts = {};
      for (const k of ['head', 'spec', 'phases', 'bids', 'execs', 'verdict', 'output', 'logs']) parts[k] = el('div');
      root.setAttribute('data-job-id', j.id);
      put(root, parts.head,
        el('div', { class: 'grid' }, card('Spec', parts.spec), card('Verdict', parts.verdict)),
        card('Phases', parts.phases), card('Bids', parts.bids), card('Executions', parts.execs),
        card('Verified output', parts.output), card('Timeline', parts.logs));
    }
    root.setAttribute('data-status', j.status);
    const spec = j.spec || {}, res = spec.resources || {};
    const cancel = FINAL.has(j.status) ? null : el('button', { type: 'button', class: 'secondary', onclick: cancelJob }, 'Cancel job');
    put(parts.head,
      el('div', { class: 'job-head' }, el('h2', null, 'Job ', el('span', { class: 'mono' }, shortHex(j.id))), badge(j.status), cancel),
      el('p', { class: 'mono peer-id' }, j.id),
      j.failure_reason ? el('p', { class: 'error-text' }, j.failure_reason) : null,
      j.queued_reason ? muted('Queued: ' + j.queued_reason) : null,
      el('p', { class: 'error-text', id: 'cancel-msg' }));
    const env = Object.keys(spec.env || {});
    const dl = el('dl', { class: 'kv' });
    fillKv(dl, [
      ['Image', spec.image], ['Digest', spec.image_digest ? el('span', { class: 'mono' }, spec.image_digest) : null],
      ['Command', el('span', { class: 'mono' }, cmdText(spec.command))],
      ['Environment', env.length ? env.join(', ') : null],
      ['Resources', res.cpus + ' CPU · ' + res.memory_mb + ' MiB' + (res.gpus ? ' · ' + res.gpus + ' GPU' : '')],
      ['Timeout', spec.timeout_s + ' s'], ['Workers', 'n = ' + spec.redundancy + ', agreement k = ' + spec.consensus],
      ['Reward', spec.reward ? spec.reward + ' credits each' : null], ['Network', spec.network ? 'allowed' : 'none'],
      ['Submitted', fmtTime(j.submitted_at)], ['Total', j.timings && j.timings.total_ms != null ? fmtMs(j.timings.total_ms) : null],
    ]);
    put(parts.spec, dl);
    renderPhases();
    renderBids(j);
    renderExecutions(j);
    renderVerdict(j);
    renderOutput(true);
    renderLogs(j);
  }

  function renderPhases() {
    const j = state.detail;
    if (!j || !parts) return;
    const { segs, total } = phaseSegments(j, now());
    if (!segs.length) {
      put(parts.phases, muted('No phase recorded' + (j.timings && j.timings.total_ms != null ? '; total ' + fmtMs(j.timings.total_ms) : '') + '.'));
      return;
    }
    const scale = total > 0 ? total : 1;
    const pct = (v) => ((100 * v) / scale).toFixed(3) + '%';
    const track = el('div', { class: 'track' }, segs.map((s) => {
      const d = el('div', { class: 'seg ph-' + s.cls + (s.ongoing ? ' ongoing' : ''), title: s.name + ': ' + s.ms + ' ms' + (s.ongoing ? ' so far' : '') },
        s.ms / scale > 0.14 ? fmtMs(s.ms) : '');
      d.style.left = pct(s.start);
      d.style.width = pct(s.ms);
      return d;
    }));
    const axis = el('div', { class: 'axis' }, el('span', { class: 'first' }, '0'), el('span', { class: 'mid' }, fmtMs(scale / 2)),
      el('span', { class: 'last' }, fmtMs(scale)));
    const legend = el('ul', { class: 'legend phases-legend' }, segs.map((s) => el('li', null, el('i', { class: 'sw ph-' + s.cls }),
      s.name + ' ' + s.ms.toLocaleString() + ' ms' + (s.ongoing ? ' (so far)' : ''))),
    j.timings && j.timings.total_ms != null ? el('li', null, 'total ' + j.timings.total_ms.toLocaleString() + ' ms') : null);
    put(parts.phases, track, axis, legend);
  }

  function table(head, rows) {
    return el('div', { class: 'table-wrap' }, el('table', null,
      el('thead', null, el('tr', null, head.map((h) => el('th', null, h)))), el('tbody', null, rows)));
  }

  function renderBids(j) {
    const bids = j.bids || [];
    put(parts.bids, bids.length ? table(['Bidder', 'Received', 'Image'], bids.map((b) => el('tr', null,
      td(peerSpan(b.peer_id)),
      el('td', { title: fmtTime(b.received_at) }, '+' + fmtMs(Math.max(0, b.received_at - j.submitted_at))),
      el('td', { class: 'mono' }, b.image ? shortHex(b.image.replace(/^sha256:/, '')) + ' (local)' : 'would pull'))))
      : muted('No bids yet.'));
  }

  function voteOf(j, peer) {
    const v = j.verdict;
    if (!v) return null;
    for (const k of ['agreeing', 'disagreeing', 'failed', 'silent']) if ((v[k] || []).includes(peer)) return k;
    return null;
  }
  const voteWord = { agreeing: ['agreed', 'completed'], disagreeing: ['disagreed', 'failed'], failed: ['failed', 'failed'], silent: ['silent', 'silent'] };

  function renderExecutions(j) {
    const ex = j.executions || [];
    if (!ex.length) { put(parts.execs, muted('No worker assigned yet.')); return; }
    put(parts.execs, table(['Worker', 'Try', 'State', 'Vote', 'Result hash', 'End', 'Run time', 'Detail'], ex.map((e) => {
      const vote = voteOf(j, e.peer_id);
      const note = e.failure || e.detail;
      const tails = (e.stdout_tail || e.stderr_tail) ? el('details', null, el('summary', null, 'output tail'),
        e.stdout_tail ? [el('div', { class: 'muted' }, 'stdout'), el('pre', null, e.stdout_tail)] : null,
        e.stderr_tail ? [el('div', { class: 'muted' }, 'stderr'), el('pre', null, e.stderr_tail)] : null) : null;
      return el('tr', { class: e.active ? null : 'inactive', title: e.active ? null : 'not holding a slot' },
        td(peerSpan(e.peer_id)),
        td(String(e.attempt)),
        td(badge(e.status)),
        td(vote ? badge(voteWord[vote][0], voteWord[vote][1]) : '—'),
        el('td', { class: 'mono', title: e.result_hash || '' }, e.result_hash ? shortHex(e.result_hash) : '—'),
        td(e.end || '—'),
        td(fmtMs(e.duration_ms)),
        el('td', { class: 'wrap' }, note ? el('div', null, note) : null, tails));
    })));
  }

  function renderVerdict(j) {
    const v = j.verdict;
    if (!v) { put(parts.verdict, muted(FINAL.has(j.status) ? 'No verdict.' : 'No verdict yet.')); return; }
    const who = (list) => (list && list.length ? el('span', null, list.map((p, i) => [i ? ', ' : '', peerSpan(p)])) : null);
    const dl = el('dl', { class: 'kv' });
    fillKv(dl, [
      ['Outcome', badge(v.outcome)],
      ['Result hash', v.result_hash ? el('span', { class: 'mono', title: v.result_hash }, shortHex(v.result_hash)) : null],
      ['End', v.end], ['Image', v.image ? el('span', { class: 'mono' }, v.image) : null], ['Reason', v.reason],
      ['Agreeing', who(v.agreeing) || 'none'], ['Disagreeing', who(v.disagreeing)], ['Failed', who(v.failed)], ['Silent', who(v.silent)],
      ['Ledger entry', el('span', { class: 'mono', title: v.entry_id }, shortHex(v.entry_id))],
    ]);
    put(parts.verdict, dl);
  }

  function renderOutput(retry) {
    const j = state.detail;
    if (!j || !parts) return;
    if (j.status !== 'completed') {
      put(parts.output, muted(FINAL.has(j.status)
        ? 'No verified output: the job is ' + j.status + '.' : 'The verified output appears here when the job completes.'));
      return;
    }
    const r = state.results.get(j.id);
    if (!r || (retry && r.error)) { loadResult(j.id); return; }
    if (r.loading) { put(parts.output, muted('Loading the verified output…')); return; }
    const base = API + 'jobs/' + j.id + '/result';
    const links = el('p', { class: 'links' }, el('a', { href: base, download: j.id + '.stdout' }, 'Download stdout'), ' · ',
      el('a', { href: base + '?format=tar', download: j.id + '.tar' }, 'Download /out files (tar)'));
    if (r.error) { put(parts.output, el('p', { class: 'error-text' }, r.error), links); return; }
    put(parts.output,
      muted('stdout, ' + (r.more && !r.len ? 'over ' : '') + fmtBytes(r.size) + (r.more ? ', first ' + fmtBytes(OUTPUT_LIMIT) + ' shown' : '')),
      r.size ? el('pre', { class: 'output' }, r.text) : muted('(empty)'), links);
  }

  async function loadResult(id) {
    state.results.set(id, { loading: true });
    if (state.detailId === id) renderOutput(false);
    let r;
    try {
      const res = await fetch(API + 'jobs/' + id + '/result', { cache: 'no-store' });
      if (!res.ok) {
        const body = await res.json().catch(() => null);
        r = { error: body && body.error ? body.error : 'HTTP ' + res.status };
      } else {
        // Read only what is shown: stdout may be megabytes.
        const reader = res.body.getReader(), bytes = new Uint8Array(OUTPUT_LIMIT);
        let got = 0, more = false;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          bytes.set(value.subarray(0, OUTPUT_LIMIT - got), got);
          got = Math.min(OUTPUT_LIMIT, got + value.length);
          if (got === OUTPUT_LIMIT) { more = true; reader.cancel().catch(() => {}); break; }
        }
        const len = Number(res.headers.get('Content-Length')) || 0;
        r = { size: len || got, len, more: len ? len > OUTPUT_LIMIT : more, text: new TextDecoder('utf-8').decode(bytes.subarray(0, got)) };
      }
    } catch (e) {
      r = { error: e.message || String(e) };
    }
    state.results.set(id, r);
    if (state.detailId === id) renderOutput(false);
  }

  function renderLogs(j) {
    const logs = state.logs;
    if (!logs) { put(parts.logs, muted('Loading…')); return; }
    if (!logs.length) { put(parts.logs, muted('Nothing logged yet.')); return; }
    put(parts.logs, el('ol', { class: 'timeline' }, logs.map((l) => el('li', null,
      el('time', { class: 'muted mono', title: fmtTime(l.at) }, '+' + fmtMs(Math.max(0, l.at - j.submitted_at))), ' ',
      el('span', null, l.message)))));
  }

  async function cancelJob(ev) {
    const id = state.detailId, btn = ev.currentTarget;
    btn.disabled = true;
    try {
      state.detail = await api('jobs/' + id, { method: 'DELETE' });
      renderDetail();
      want('jobs', 'stats', 'detail');
    } catch (e) {
      const msg = $('#cancel-msg');
      if (msg) msg.textContent = e.message;
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- ledger

  function renderLedger() {
    const l = state.ledger;
    if (!l) return;
    const me = state.node && state.node.peer_id;
    fillKv($('#ledger-kv'), [['Entries', String(l.entries)],
      ['Summary hash', el('span', { class: 'mono peer-id' }, l.summary)], ['Identities', String(l.peers.length)]]);
    $('#ledger-empty').hidden = l.peers.length > 0;
    const best = Math.max(1, ...l.peers.map((p) => p.reputation));
    syncRows($('#ledger-table tbody'), l.peers, 'data-peer-id', (p) => p.peer_id, (tr, p) => {
      const bar = el('i');
      bar.style.width = Math.max(0, Math.min(100, (100 * p.reputation) / best)).toFixed(1) + '%';
      tr.className = p.peer_id === me ? 'me' : '';
      put(tr, td(peerSpan(p.peer_id, me)),
        td(el('span', { class: 'meter' }, bar), ' ' + p.reputation),
        td(String(p.credits)), td(String(p.agreed)), td(String(p.disagreed)),
        td(String(p.failed)), td(String(p.silent)), td(String(p.weight)));
    });
  }

  // ---------------------------------------------------------------- submit

  function formValues(form) {
    const v = {};
    for (const e of form.elements) {
      if (!e.name) continue;
      v[e.name] = e.type === 'checkbox' ? e.checked : e.value;
    }
    return v;
  }

  function preview() {
    const pre = $('#submit-preview');
    try { pre.textContent = JSON.stringify(buildSpec(formValues($('#submit-form'))), null, 2); } catch (e) { pre.textContent = e.message; }
  }

  /** How the node names a spec field in its errors, and the form input that fills it. */
  const FIELD_NAMES = [['resources.cpus', 'cpus'], ['resources.memory_mb', 'memory_mb'],
    ['resources.gpus', 'gpus'], ['timeout_s', 'timeout_s'], ['consensus', 'consensus'],
    ['redundancy', 'redundancy'], ['image_digest', 'image_digest'], ['image', 'image'],
    ['command', 'command'], ['reward', 'reward'], ['env', 'env']];

  async function onSubmit(ev) {
    ev.preventDefault();
    const out = $('#submit-result'), btn = $('#submit-button');
    out.removeAttribute('data-error');
    out.removeAttribute('data-job-id');
    out.className = 'full';
    const form = ev.currentTarget;
    for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
    const fail = (msg) => {
      // The parser's "at line 1 column N" points into JSON the user never wrote.
      msg = String(msg).replace(/ at line \d+ column \d+$/, '');
      out.setAttribute('data-error', '1');
      out.className = 'full error-text';
      out.textContent = msg;
      // Mark the field the message names (the node names fields as the spec spells them).
      const named = FIELD_NAMES.find(([spelt]) => msg.includes(spelt));
      const input = named && form.elements[named[1]];
      if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    };
    if (!form.elements.image.value.trim()) { fail('image: required, e.g. distributeai/toolbox:local'); return; }
    let spec;
    try { spec = buildSpec(formValues(form)); } catch (e) { fail(e.message); return; }
    btn.disabled = true;
    out.textContent = 'Submitting…';
    try {
      const res = await fetch(API + 'jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(spec) });
      const body = await res.json().catch(() => null);
      if (!res.ok) { fail(body && body.error ? body.error : 'HTTP ' + res.status); return; }
      out.setAttribute('data-job-id', body.id);
      out.className = 'full ok-text';
      put(out, 'Submitted job ', jobLink(body.id, body.id));
      if (!state.jobs.some((j) => j.id === body.id)) state.jobs.unshift(body);
      renderJobs();
      want('jobs', 'stats');
    } catch (e) {
      fail(e.message || String(e));
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- routing and start

  function route() {
    const segs = location.hash.replace(/^#\/?/, '').split('/');
    let view = segs[0] || 'overview';
    if (view === 'jobs' && segs[1]) { view = 'job'; openDetail(segs[1]); } else state.detailId = null;
    if (!['overview', 'peers', 'jobs', 'ledger', 'submit', 'job'].includes(view)) view = 'overview';
    for (const s of document.querySelectorAll('main > section')) s.hidden = s.getAttribute('data-view') !== view;
    const navView = view === 'job' ? 'jobs' : view;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.getAttribute('href') === '#/' + navView) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    if (view === 'overview') renderCharts();
  }

  function init() {
    window.addEventListener('hashchange', route);
    let resizeTimer = null;
    window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(renderCharts, 200); });
    const form = $('#submit-form');
    form.addEventListener('submit', onSubmit);
    form.addEventListener('input', preview);
    route();
    preview();
    ALL.forEach((k) => wanted.add(k));
    flush();
    connectEvents();
    let tick = 0;
    setInterval(() => {
      tick++;
      const up = document.getElementById('uptime');
      if (up) up.textContent = fmtUptime(uptimeNow());
      if (state.detail && state.detailId && !FINAL.has(state.detail.status)) renderPhases();
      if (!state.live && tick % 5 === 0) want('all'); // no live events: poll
      else if (tick % 15 === 0) want('node', 'peers', 'stats', 'ledger');
      if (tick % 30 === 0) renderCharts();
    }, 1000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
