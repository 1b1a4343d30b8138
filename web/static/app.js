// keten's web page: the inbox, a message, record a signal, send a query,
// sent messages and their follow-up. Plain JavaScript, no framework, nothing
// fetched from elsewhere. It talks only to the node's API under /v1/ with
// the session cookie and, on every change, the X-CSRF-Token header.
//
// Rules this file keeps:
// - no message content and no subject ever goes into a URL: content travels
//   in POST bodies and stays in the page's memory; the fragment (#/view/ID)
//   holds only a view name and a msg_id;
// - the DOM is built with createElement and textContent, never from HTML
//   strings, so nothing a partner wrote can run as markup;
// - no style is set from here: the page switches classes and `hidden`.

import { STRINGS } from './i18n.js';

const MSG_ID = /^[0-9a-f]{32}$/;
const SEND_WAIT_MS = 15000; // how long a send waits for the broker's ack
const TLP = ['TLP:CLEAR', 'TLP:GREEN', 'TLP:AMBER', 'TLP:AMBER+STRICT', 'TLP:RED'];
const SOURCES = ['A', 'B', 'C', 'D', 'E', 'F'];
const CREDIBILITY = ['1', '2', '3', '4', '5', '6'];
// The structured fields of each kind of subject; the value sent is the
// parts joined with ", " (as the node stores one line of text).
const SUBJECT_KINDS = {
  address: [['street', 'text'], ['postcode', 'text'], ['town', 'text']],
  person: [['name', 'text'], ['birthdate', 'date']],
  company: [['kvk', 'text'], ['company_name', 'text']],
  vehicle: [['plate', 'text']],
};

const state = {
  lang: 'nl',
  session: null, // {actor, scopes, csrf_token, expires_at}
  caps: null, // GET /v1/capabilities
  node: '',
  events: null, // EventSource
  view: null, // {name, id}
  busyForm: false, // a form with the user's input is on screen
  inboxFilter: { kind: '', unhandled: false },
  notice: null, // {kind, text} shown once on the next screen
  seq: 0, // render generation: a late answer never overwrites a newer screen
  sessionTimer: 0,
};

// ---- texts ---------------------------------------------------------------

function t(key, vars) {
  const table = STRINGS[state.lang] || STRINGS.nl;
  let s = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : STRINGS.nl[key];
  if (s === undefined) {
    s = key;
  }
  if (vars) {
    s = s.replace(/\{(\w+)\}/g, (m, name) => (vars[name] !== undefined ? String(vars[name]) : m));
  }
  return s;
}

// Texts that follow the language while a form stays open: a Text node made
// by lt()/tt() and an attribute set by liveAttr() remember how they were
// made, and relabel() writes them again in the page's language.
const liveText = new WeakMap(); // Text node -> () => text
const liveAttrs = new WeakMap(); // element -> {attribute: () => text}
const formRelabel = new WeakMap(); // form -> what else it redraws (its problems)

function lt(make) {
  const n = document.createTextNode(make());
  liveText.set(n, make);
  return n;
}

function tt(key, vars) {
  return lt(() => t(key, vars));
}

function liveAttr(el, name, make) {
  el.setAttribute(name, make());
  const a = liveAttrs.get(el) || {};
  a[name] = make;
  liveAttrs.set(el, a);
  return el;
}

// relabel(root): every live text and attribute under root in the page's
// language, then each form's own redraw (formRelabel). What the user typed
// or chose is left as it is.
function relabel(root) {
  const w = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
  for (let n = w.currentNode; n; n = w.nextNode()) {
    const make = liveText.get(n);
    if (make) {
      n.data = make();
    }
    for (const [name, fn] of Object.entries(liveAttrs.get(n) || {})) {
      n.setAttribute(name, fn());
    }
  }
  const forms = root.matches && root.matches('form') ? [root] : [...root.querySelectorAll('form')];
  for (const f of forms) {
    const redraw = formRelabel.get(f);
    if (redraw) {
      redraw();
    }
  }
}

function pickLanguage() {
  let saved = null;
  try {
    saved = window.localStorage.getItem('keten.lang');
  } catch (e) {
    saved = null;
  }
  if (saved === 'nl' || saved === 'en') {
    return saved;
  }
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'nl'];
  for (const l of langs) {
    const base = String(l).toLowerCase().split('-')[0];
    if (base === 'nl' || base === 'en') {
      return base;
    }
  }
  return 'nl';
}

function applyStaticTexts() {
  document.documentElement.lang = state.lang;
  for (const el of document.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
  document.getElementById('nav').setAttribute('aria-label', t('nav_label'));
  document.getElementById('lang-select').value = state.lang;
  updateWho();
}

// ---- DOM -----------------------------------------------------------------

// h('p', {class: 'x', id: 'y'}, 'text', child...): attributes are set with
// setAttribute (a value of false or null leaves it out), children are nodes
// or text.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) {
      continue;
    }
    if (k === 'text') {
      el.textContent = v;
    } else if (k === 'value') {
      el.value = v;
    } else if (k === 'checked') {
      el.checked = !!v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) {
      continue;
    }
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return el;
}

function announce(text) {
  const live = document.getElementById('live');
  live.textContent = '';
  window.setTimeout(() => {
    live.textContent = text;
  }, 50);
}

function fmtTime(iso) {
  if (!iso) {
    return t('none');
  }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) {
    return iso;
  }
  return new Intl.DateTimeFormat(state.lang === 'en' ? 'en-GB' : 'nl-NL', {
    dateStyle: 'medium',
    timeStyle: 'short',
  }).format(d);
}

function timeEl(iso) {
  return h('time', { datetime: iso || false }, fmtTime(iso));
}

function age(iso) {
  const d = new Date(iso);
  const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
  if (Number.isNaN(s) || s < 60) {
    return t('time_ago_s');
  }
  if (s < 3600) {
    return t('time_ago_m', { n: Math.floor(s / 60) });
  }
  if (s < 86400) {
    return t('time_ago_h', { n: Math.floor(s / 3600) });
  }
  return t('time_ago_d', { n: Math.floor(s / 86400) });
}

function tlpBadge(handling) {
  if (!handling) {
    return h('span', { class: 'badge tlp-none' }, tt('tlp_none'));
  }
  const cls = 'tlp-' + handling.replace('TLP:', '').replace('+', '-').toLowerCase();
  return liveAttr(h('span', { class: 'badge tlp ' + cls }, handling), 'title', () => t('tlp_' + handling + '_hint'));
}

function stateBadge(text, tone) {
  return h('span', { class: 'badge state state-' + tone }, text);
}

function partnerName(id) {
  const p = state.caps && state.caps.partners ? state.caps.partners.find((x) => x.id === id) : null;
  return p ? `${p.org} (${id})` : id;
}

function cap(s) {
  return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
}

function kindName(kind) {
  return t('kind_' + kind);
}

function reasonText(reason, rule) {
  if (!reason) {
    return t('none');
  }
  const key = 'reason_' + reason;
  let s = STRINGS.nl[key] !== undefined ? t(key) : t('reason_other', { reason });
  if (reason === 'POLICY' && rule !== undefined && rule !== null) {
    s += ' (' + t('policy_rule', { rule }) + ')';
  }
  return s;
}

function hasScope(scope) {
  return !!(state.session && Array.isArray(state.session.scopes) && state.session.scopes.includes(scope));
}

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || t('error_network'));
    this.status = status;
    this.problem = problem || {};
  }
}

// api(METHOD, PATH, BODY): the JSON answer {status, data}; throws ApiError
// with the problem+json of an error. A 401 while signed in ends the session
// on screen.
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json; charset=utf-8';
  }
  if (method !== 'GET' && method !== 'HEAD' && state.session && state.session.csrf_token) {
    headers['X-CSRF-Token'] = state.session.csrf_token;
  }
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, { title: t('error_network') });
  }
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && state.session && path !== '/v1/session') {
      sessionEnded('ended');
    }
    throw new ApiError(res.status, data);
  }
  return { status: res.status, data };
}

// problemText(err): what went wrong, in the page's language, by the
// answer's status (the node's own detail is English: techDetail shows it).
function problemText(err) {
  if (!(err instanceof ApiError)) {
    return String(err);
  }
  const p = err.problem || {};
  if (err.status === 0) {
    return t('error_network');
  }
  if (err.status === 403 && p.scope) {
    return t('forbidden_scope', { scope: p.scope });
  }
  const key = 'http_' + err.status;
  return STRINGS.nl[key] !== undefined ? t(key) : t('http_other', { status: err.status });
}

// techDetail(text): the node's own text (English), folded away and labelled
// as a technical detail; null when there is none.
function techDetail(text) {
  if (!text) {
    return null;
  }
  return h('details', { class: 'tech' }, h('summary', {}, tt('tech_detail')), h('p', { lang: 'en' }, text));
}

function errorNotice(err) {
  const detail = err instanceof ApiError && err.problem ? err.problem.detail : null;
  return h('div', { class: 'notice error', role: 'alert' }, h('h2', {}, tt('error_title')), h('p', {}, lt(() => problemText(err))), techDetail(detail));
}

// problemSentence(p, kind): a problem of a check (path, code: docs/api/
// openapi.yaml, Validation) as a sentence in the page's language, chosen by
// its code and the field it is about; kind is the form's (signal, query,
// reply, feedback).
function problemSentence(p, kind) {
  const parts = pathParts(p.path);
  const head = parts[0];
  // pathParts drops a leading "signal": the request's own field keeps it
  const field = p.path === 'signal' ? 'signal' : parts.filter((x) => typeof x === 'string').join('_');
  const pick = (base) => (STRINGS.nl[base + '_' + field] !== undefined ? base + '_' + field : STRINGS.nl[base + '_' + head] !== undefined ? base + '_' + head : base);
  switch (p.code) {
    case 'missing':
      return t(pick('prob_missing'));
    case 'invalid':
      return t(pick('prob_invalid'));
    case 'too-large':
      return t('prob_too_large');
    case 'malformed':
      return t('prob_malformed');
    case 'unregistered':
      return t('prob_unregistered');
    case 'unknown-recipient':
      return t('prob_unknown_recipient');
    case 'policy':
      return t(kind === 'reply' || kind === 'feedback' ? 'prob_policy_' + kind : 'prob_policy');
    case 'node-cannot-send':
      return t('prob_node');
    case 'unknown-message':
      return t('prob_unknown_message');
    case 'cannot-answer':
      return t('prob_cannot_answer');
    case 'already-replied':
      return t('prob_already_replied');
    case 'request':
      return t('prob_request');
    default:
      return t('prob_error');
  }
}

// ---- session -------------------------------------------------------------

async function boot() {
  state.lang = pickLanguage();
  applyStaticTexts();
  document.getElementById('lang-select').addEventListener('change', (ev) => {
    state.lang = ev.target.value === 'en' ? 'en' : 'nl';
    try {
      window.localStorage.setItem('keten.lang', state.lang);
    } catch (e) {
      // a browser without storage keeps the choice for this page only
    }
    applyStaticTexts();
    if (state.session) {
      route(false, true);
    } else {
      showLogin();
    }
  });
  document.getElementById('logout').addEventListener('click', logout);
  document.getElementById('skip-link').addEventListener('click', (ev) => {
    ev.preventDefault(); // the fragment holds the route, not an anchor
    document.getElementById('main').focus();
  });
  window.addEventListener('hashchange', () => route(true));
  // A session that is already open (the cookie), or one the proxy in front
  // of the node opens for the person it names (POST /v1/session {}).
  try {
    const r = await api('GET', '/v1/session');
    await started(r.data);
    return;
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      showLogin(e);
      return;
    }
  }
  try {
    const r = await api('POST', '/v1/session', {});
    await started(r.data);
  } catch (e) {
    showLogin();
  }
}

// watchSession(): when the session's expires_at comes, ask the node: a
// session that was used meanwhile goes on (a new expires_at), one that ended
// is shown as ended, with the time, without waiting for the next click.
function watchSession() {
  window.clearTimeout(state.sessionTimer);
  const at = state.session ? Date.parse(state.session.expires_at) : NaN;
  if (Number.isNaN(at)) {
    return;
  }
  const ms = Math.min(Math.max(at - Date.now() + 1000, 1000), 2147483647);
  state.sessionTimer = window.setTimeout(async () => {
    try {
      const r = await api('GET', '/v1/session');
      if (state.session) {
        state.session = Object.assign(state.session, r.data);
        watchSession();
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        sessionEnded('ended');
      } else {
        watchSession();
      }
    }
  }, ms);
}

// started(session, signedIn): the session is open; signedIn: the user just
// signed in here (focus goes to the first screen's heading), else the page
// was loaded with a session and the focus stays at the top of the page.
async function started(session, signedIn) {
  state.session = session;
  watchSession();
  try {
    const caps = await api('GET', '/v1/capabilities');
    state.caps = caps.data;
    state.node = caps.data.node || '';
  } catch (e) {
    if (!state.session) {
      return;
    }
    state.caps = { categories: [], purposes: [], partners: [], allowed: { signal: {}, query: {} } };
  }
  if (!state.session) {
    return;
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  for (const a of document.querySelectorAll('#nav a')) {
    const v = a.dataset.view;
    a.parentElement.hidden = (v === 'record' || v === 'query') && !hasScope('send');
  }
  updateWho();
  openEvents();
  route(!!signedIn);
}

function updateWho() {
  const who = document.getElementById('who');
  if (!state.session) {
    who.hidden = true;
    who.textContent = '';
    return;
  }
  who.hidden = false;
  who.textContent = t('signed_in_as', { actor: state.session.actor, node: state.node });
}

function sessionEnded(why) {
  if (!state.session && why !== 'logout') {
    return;
  }
  state.session = null;
  state.caps = null;
  state.busyForm = false;
  window.clearTimeout(state.sessionTimer);
  if (state.events) {
    state.events.close();
    state.events = null;
  }
  state.notice =
    why === 'logout'
      ? { kind: 'ok', text: t('logged_out') }
      : { kind: 'warn', text: t('session_ended', { time: fmtTime(new Date().toISOString()) }) };
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  updateWho();
  showLogin();
}

async function logout() {
  try {
    await api('DELETE', '/v1/session');
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      announce(problemText(e));
      return;
    }
  }
  sessionEnded('logout');
}

function showLogin(err) {
  state.view = { name: 'login' };
  state.seq++;
  document.title = t('login_title') + ' – keten';
  const view = document.getElementById('view');
  const notice = state.notice;
  state.notice = null;
  const input = h('input', {
    type: 'password',
    id: 'login-token',
    name: 'token',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-describedby': 'login-token-hint',
    required: true,
  });
  const errorP = h('p', { class: 'field-error', id: 'login-token-error', hidden: true });
  const form = h(
    'form',
    { class: 'login', novalidate: true },
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'login-token' }, t('login_token')),
      h('span', { class: 'hint', id: 'login-token-hint' }, t('login_token_hint')),
      errorP,
      input,
    ),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('login_submit'))),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    const fail = (text) => {
      errorP.textContent = text;
      errorP.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', 'login-token-hint login-token-error');
      input.focus();
    };
    if (!token) {
      fail(t('login_token_empty'));
      return;
    }
    try {
      const r = await api('POST', '/v1/session', { token });
      input.value = '';
      await started(r.data, true);
    } catch (e) {
      fail(t('login_failed', { detail: problemText(e) }));
    }
  });
  view.replaceChildren(
    ...[
      h('h1', { tabindex: '-1' }, t('login_title')),
      notice ? h('div', { class: 'notice ' + notice.kind, role: 'status' }, notice.text) : null,
      err ? errorNotice(err) : null,
      h('p', { class: 'intro' }, t('login_intro')),
      form,
    ].filter((n) => n),
  );
  setNavCurrent(null);
}

// ---- events --------------------------------------------------------------

function openEvents() {
  if (state.events || !hasScope('read')) {
    return;
  }
  const es = new EventSource('/v1/events', { withCredentials: true });
  state.events = es;
  const on = (type, fn) =>
    es.addEventListener(type, (ev) => {
      let d = {};
      try {
        d = JSON.parse(ev.data);
      } catch (e) {
        d = {};
      }
      fn(d);
    });
  on('message', (d) => {
    announce(t('new_message_live', { kind: kindName(d.kind), from: partnerName(d.from) }));
    const v = state.view;
    if (v && (v.name === 'inbox' || (v.name === 'status' && v.id === d.in_reply_to))) {
      route(false);
    }
  });
  const statusChanged = (d) => {
    const v = state.view;
    if (v && (v.name === 'sent' || (v.name === 'status' && v.id === d.msg_id))) {
      announce(t('live_status_update', { id: d.msg_id }));
      route(false);
    }
  };
  on('sent', statusChanged);
  on('receipt', statusChanged);
  on('handled', (d) => {
    const v = state.view;
    if (v && (v.name === 'inbox' || (v.name === 'message' && v.id === d.msg_id && !state.busyForm))) {
      route(false);
    }
  });
  on('reset', () => {
    if (!state.busyForm) {
      route(false);
    }
  });
  es.onerror = () => {
    // EventSource resumes by itself (Last-Event-ID); when it gives up, the
    // answer was not a stream: find out whether the session ended.
    if (es.readyState === EventSource.CLOSED && state.events === es) {
      state.events = null;
      api('GET', '/v1/session').then(
        () => window.setTimeout(openEvents, 5000),
        (e) => {
          if (e instanceof ApiError && e.status === 401) {
            sessionEnded('ended');
          } else {
            window.setTimeout(openEvents, 5000);
          }
        },
      );
    }
  };
}

// ---- routing -------------------------------------------------------------

function parseRoute() {
  const parts = (window.location.hash || '').replace(/^#\/?/, '').split('/');
  const name = parts[0] || 'inbox';
  const id = parts[1] || null;
  if ((name === 'message' || name === 'status') && id && MSG_ID.test(id)) {
    return { name, id };
  }
  if (['inbox', 'record', 'query', 'sent'].includes(name) && !id) {
    return { name };
  }
  return { name: 'notfound' };
}

function setNavCurrent(name) {
  for (const a of document.querySelectorAll('#nav a')) {
    const mine = a.dataset.view === name || (name === 'message' && a.dataset.view === 'inbox') || (name === 'status' && a.dataset.view === 'sent');
    if (mine) {
      a.setAttribute('aria-current', 'page');
    } else {
      a.removeAttribute('aria-current');
    }
  }
}

// openForm(r): the form the user is filling in on the screen of route r
// (the record or query form, or the answer section of a message), or null.
function openForm(r) {
  const v = state.view;
  const form = document.getElementById('signal-form');
  if (!state.busyForm || !form || !v || v.name !== r.name || v.id !== r.id) {
    return null;
  }
  return form.closest('#answer-form') || form;
}

// route(navigated, relanguage): draw the screen the fragment names.
// navigated: the user went there (focus moves to its heading); false: a
// refresh in place. relanguage: the language changed; an open form is kept
// as it is (what the user typed and chose, the problems shown) and moved
// into the screen drawn anew, its texts written again (relabel).
async function route(navigated, relanguage) {
  if (!state.session) {
    showLogin();
    return;
  }
  const r = parseRoute();
  const keep = relanguage && !navigated ? openForm(r) : null;
  if (!navigated && !keep && state.busyForm && state.view && state.view.name === r.name) {
    return; // never throw away what the user is typing
  }
  state.view = r;
  state.busyForm = false;
  const seq = ++state.seq;
  setNavCurrent(r.name);
  let nodes;
  try {
    if (r.name === 'inbox') {
      nodes = await viewInbox();
    } else if (r.name === 'message') {
      nodes = await viewMessage(r.id);
    } else if (r.name === 'record' || r.name === 'query') {
      nodes = viewCompose(r.name === 'record' ? 'signal' : 'query');
    } else if (r.name === 'sent') {
      nodes = await viewSent();
    } else if (r.name === 'status') {
      nodes = await viewStatus(r.id);
    } else {
      nodes = [h('h1', { tabindex: '-1' }, t('not_found'))];
    }
  } catch (e) {
    if (!state.session) {
      return;
    }
    if (keep) {
      // The screen could not be drawn again: the form stays where it is.
      state.busyForm = true;
      relabel(keep);
      return;
    }
    nodes = [h('h1', { tabindex: '-1' }, t('error_title')), errorNotice(e)];
  }
  if (seq !== state.seq || !state.session) {
    return;
  }
  // A notice stays on its screen through live refreshes, until the user
  // goes elsewhere.
  const key = r.name + '/' + (r.id || '');
  if (state.notice && state.notice.view !== key) {
    state.notice = null;
  }
  const notice = state.notice;
  const view = document.getElementById('view');
  nodes = nodes.filter((n) => n);
  view.replaceChildren(...nodes);
  if (keep) {
    const fresh = view.querySelector('#' + keep.id);
    const slot = view.querySelector('#answer-slot');
    if (fresh) {
      fresh.replaceWith(keep);
    } else if (keep.id === 'answer-form' && slot) {
      slot.replaceChildren(keep);
      const b = view.querySelector('#answer-button');
      if (b) {
        b.setAttribute('aria-expanded', 'true');
      }
    }
    state.busyForm = keep.isConnected;
    relabel(keep);
  }
  if (notice) {
    nodes[0].after(h('div', { class: 'notice ' + notice.kind, role: 'status' }, notice.text));
  }
  const h1 = view.querySelector('h1');
  if (h1) {
    document.title = h1.textContent + ' – keten';
    if (navigated) {
      h1.focus();
    }
  }
}

// ---- inbox ---------------------------------------------------------------

async function viewInbox() {
  const f = state.inboxFilter;
  const q = new URLSearchParams();
  if (f.kind) {
    q.set('kind', f.kind);
  }
  q.set('unhandled', f.unhandled ? 'true' : 'false');
  const list = (await api('GET', '/v1/inbox?' + q.toString())).data.messages || [];
  // Which of them are not handled yet (the list items need not say).
  let open = null;
  if (!f.unhandled && list.some((m) => typeof m.handled !== 'boolean')) {
    const q2 = new URLSearchParams(q);
    q2.set('unhandled', 'true');
    open = new Set(((await api('GET', '/v1/inbox?' + q2.toString())).data.messages || []).map((m) => m.msg_id));
  }
  const isHandled = (m) => (typeof m.handled === 'boolean' ? m.handled : f.unhandled ? false : !open.has(m.msg_id));

  const kindSel = h(
    'select',
    { id: 'filter-kind', class: 'inline' },
    h('option', { value: '' }, t('inbox_filter_all')),
    ['signal', 'query', 'reply', 'feedback'].map((k) => h('option', { value: k }, kindName(k))),
  );
  kindSel.value = f.kind;
  const unhandled = h('input', { type: 'checkbox', id: 'filter-unhandled', checked: f.unhandled });
  const filter = h(
    'form',
    { class: 'filter', 'aria-label': t('inbox_filter') },
    h(
      'fieldset',
      {},
      h('legend', {}, t('inbox_filter')),
      h('div', { class: 'field' }, h('label', { for: 'filter-kind' }, t('inbox_filter_kind')), kindSel),
      h('div', { class: 'choice' }, unhandled, h('label', { for: 'filter-unhandled' }, t('inbox_filter_unhandled'))),
      h('button', { type: 'submit', class: 'secondary' }, t('inbox_filter_apply')),
    ),
  );
  filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.inboxFilter = { kind: kindSel.value, unhandled: unhandled.checked };
    route(false);
  });

  let body;
  if (list.length === 0) {
    body = h('p', { class: 'notice' }, t('inbox_empty'));
  } else {
    const rows = list.map((m) => {
      const s = m.signal || {};
      const handled = isHandled(m);
      const label = s.summary ? (s.summary.length > 90 ? s.summary.slice(0, 90) + '…' : s.summary) : m.category || s.type || m.msg_id;
      return h(
        'tr',
        { class: handled ? 'handled' : 'unhandled' },
        h('td', {}, tlpBadge(s.handling)),
        h('td', {}, kindName(m.kind)),
        h('td', {}, m.category || s.type || ''),
        h('td', {}, partnerName(m.from)),
        h('td', {}, h('time', { datetime: m.received_at, title: fmtTime(m.received_at) }, age(m.received_at))),
        h('td', {}, h('a', { href: '#/message/' + m.msg_id }, label)),
        h('td', {}, handled ? stateBadge(t('state_handled'), 'ok') : stateBadge(t('state_new'), 'wait')),
      );
    });
    body = h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { id: 'inbox-table' },
        h('caption', {}, t('inbox_caption')),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['col_handling', 'col_kind', 'col_category', 'col_from', 'col_received', 'col_summary', 'col_state'].map((k) =>
              h('th', { scope: 'col' }, t(k)),
            ),
          ),
        ),
        h('tbody', {}, rows),
      ),
    );
  }
  return [h('h1', { tabindex: '-1' }, t('inbox_title')), h('p', { class: 'intro' }, t('inbox_intro')), filter, body];
}

// ---- one message -----------------------------------------------------------

function gradingText(g) {
  if (!g) {
    return t('none');
  }
  return `${t('src_' + g.source)}; ${t('inf_' + g.information)}`;
}

function signalFacts(s) {
  const rows = [];
  const add = (key, value) => {
    if (value === undefined || value === null || value === '') {
      return;
    }
    rows.push(h('dt', {}, t(key)), h('dd', {}, value));
  };
  add('f_summary', s.summary ? h('span', { class: 'summary-text' }, s.summary) : null);
  add('f_nature', s.nature ? t(s.nature === 'soft' ? 'nature_soft' : 'nature_hard') : null);
  add('f_grading', s.grading ? gradingText(s.grading) : null);
  add('f_handling', s.handling ? h('span', {}, tlpBadge(s.handling), ' ', t('tlp_' + s.handling + '_hint')) : null);
  add('f_observed_at', s.observed_at ? timeEl(s.observed_at) : null);
  add('f_observed_by', s.observed_by);
  if (Array.isArray(s.subjects) && s.subjects.length) {
    add(
      'f_subjects',
      h(
        'ul',
        {},
        s.subjects.map((x) => h('li', {}, (STRINGS.nl['subj_' + x.kind] !== undefined ? t('subj_' + x.kind) : x.kind) + ': ' + x.value)),
      ),
    );
  }
  if (Array.isArray(s.attachments) && s.attachments.length) {
    add(
      'f_attachments',
      h(
        'ul',
        {},
        s.attachments.map((a) =>
          h('li', {}, t('attachment_size', { name: a.name, type: a.media_type, n: Math.floor(((a.data_base64 || '').length * 3) / 4) })),
        ),
      ),
    );
  }
  return h('dl', { class: 'facts' }, rows);
}

async function viewMessage(id) {
  const m = (await api('GET', '/v1/inbox/' + id)).data.message;
  const s = m.signal || {};
  const result = h('div', { id: 'message-result', tabindex: '-1' });
  const meta = h(
    'dl',
    { class: 'facts' },
    h('dt', {}, t('f_msg_id')),
    h('dd', { class: 'mono' }, m.msg_id),
    h('dt', {}, t('f_from')),
    h('dd', {}, partnerName(m.from)),
    h('dt', {}, t('f_category')),
    h('dd', {}, m.category || s.type || ''),
    h('dt', {}, t('f_purpose')),
    h('dd', {}, m.purpose || s.purpose || ''),
    m.created_at ? [h('dt', {}, t('f_created_at')), h('dd', {}, timeEl(m.created_at))] : null,
    h('dt', {}, t('f_received_at')),
    h('dd', {}, timeEl(m.received_at)),
    m.expires_at ? [h('dt', {}, t('f_expires_at')), h('dd', {}, timeEl(m.expires_at))] : null,
    m.in_reply_to
      ? [h('dt', {}, t('f_in_reply_to')), h('dd', {}, h('a', { href: '#/status/' + m.in_reply_to, class: 'mono' }, m.in_reply_to))]
      : null,
    h('dt', {}, t('f_handled')),
    h('dd', {}, m.handled ? stateBadge(t('state_handled'), 'ok') : stateBadge(t('state_new'), 'wait')),
  );
  const actions = h('div', { class: 'actions' });
  const formSlot = h('div', { id: 'answer-slot' });
  if (!m.handled && hasScope('ack')) {
    const ack = h('button', { type: 'button', id: 'ack-button' }, t('ack_button'));
    ack.addEventListener('click', async () => {
      ack.disabled = true;
      try {
        const r = await api('POST', '/v1/inbox/' + id + '/ack');
        state.notice = { kind: 'ok', text: t('ack_done', { time: fmtTime(r.data.handled_at) }), view: 'message/' + id };
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) {
          state.notice = { kind: 'warn', text: t('ack_already', { time: fmtTime(e.problem.handled_at) }), view: 'message/' + id };
        } else {
          ack.disabled = false;
          result.replaceChildren(errorNotice(e));
          result.focus();
          return;
        }
      }
      await route(false);
      const n = document.querySelector('#view .notice');
      if (n) {
        n.setAttribute('tabindex', '-1');
        n.focus();
      }
    });
    actions.append(ack);
  }
  const answerKind = m.kind === 'query' ? 'reply' : m.kind === 'signal' ? 'feedback' : null;
  // A query this node replied to already (here, from another application or
  // with keten-node reply) gets no second reply: the node names the reply
  // (reply_msg_id) and the page says so instead of offering one. Feedback on
  // a signal may be given more than once.
  const answered =
    answerKind === 'reply' && typeof m.reply_msg_id === 'string' && MSG_ID.test(m.reply_msg_id)
      ? h('p', { class: 'notice ok', id: 'answered' }, t('replied_already'), ' ', h('a', { href: '#/status/' + m.reply_msg_id }, t('replied_link')))
      : null;
  if (answerKind && !answered && hasScope('send')) {
    const b = h(
      'button',
      { type: 'button', class: 'secondary', id: 'answer-button', 'aria-expanded': 'false', 'aria-controls': 'answer-form' },
      t(answerKind === 'reply' ? 'reply_button' : 'feedback_button'),
    );
    b.addEventListener('click', () => {
      if (formSlot.firstChild) {
        return;
      }
      b.setAttribute('aria-expanded', 'true');
      state.busyForm = true;
      const heading = h('h2', { tabindex: '-1' }, tt(answerKind === 'reply' ? 'reply_title' : 'feedback_title'));
      formSlot.replaceChildren(
        h(
          'section',
          { id: 'answer-form', 'aria-labelledby': 'answer-heading' },
          heading,
          h('p', { class: 'intro' }, tt(answerKind === 'reply' ? 'reply_intro' : 'feedback_intro')),
          signalForm(answerKind, m),
        ),
      );
      heading.id = 'answer-heading';
      heading.focus();
    });
    actions.append(b);
  }
  return [
    h('h1', { tabindex: '-1' }, cap(t('message_title', { kind: kindName(m.kind), from: partnerName(m.from) }))),
    h('p', {}, tlpBadge(s.handling)),
    result,
    answered,
    actions,
    h('h2', {}, t('message_content')),
    signalFacts(s),
    h('h2', {}, t('message_meta')),
    meta,
    formSlot,
    h('p', {}, h('a', { href: '#/inbox' }, t('back_to_inbox'))),
  ];
}

// ---- the form: signal, query, reply, feedback ------------------------------

function viewCompose(kind) {
  state.busyForm = true;
  return [
    h('h1', { tabindex: '-1' }, t(kind === 'signal' ? 'record_title' : 'query_title')),
    h('p', { class: 'intro' }, t(kind === 'signal' ? 'record_intro' : 'query_intro')),
    signalForm(kind, null),
  ];
}

// A labelled field: label, hint, error line, control; the control's
// aria-describedby names the hint (and the error when there is one).
function field(id, labelKey, control, hintKey, required) {
  const hintId = hintKey ? id + '-hint' : null;
  control.id = id;
  if (hintId) {
    control.setAttribute('aria-describedby', hintId);
  }
  if (required) {
    control.setAttribute('aria-required', 'true');
  }
  return h(
    'div',
    { class: 'field', 'data-field': id },
    h('label', { for: id }, tt(labelKey), required ? h('span', { 'aria-hidden': 'true' }, ' *') : null, required ? h('span', { class: 'visually-hidden' }, ' ', tt('required_mark')) : null),
    hintKey ? h('span', { class: 'hint', id: hintId }, tt(hintKey)) : null,
    h('p', { class: 'field-error', id: id + '-error', hidden: true }),
    control,
  );
}

// A group of radio buttons or checkboxes in a fieldset with a legend.
function group(id, legendKey, hintKey, items, required) {
  const hintId = hintKey ? id + '-hint' : null;
  return h(
    'fieldset',
    { id, 'aria-describedby': hintId || false },
    h('legend', {}, tt(legendKey), required ? h('span', { 'aria-hidden': 'true' }, ' *') : null, required ? h('span', { class: 'visually-hidden' }, ' ', tt('required_mark')) : null),
    hintKey ? h('span', { class: 'hint', id: hintId }, tt(hintKey)) : null,
    h('p', { class: 'field-error', id: id + '-error', hidden: true }),
    h('div', { class: 'group-items' }, items),
  );
}

function choice(type, name, id, value, labelText, hintText, checked) {
  const input = h('input', { type, name, id, value, checked, 'aria-describedby': hintText ? id + '-hint' : false });
  return h(
    'div',
    { class: 'choice' },
    input,
    h('div', {}, h('label', { for: id }, labelText), hintText ? h('span', { class: 'hint', id: id + '-hint' }, hintText) : null),
  );
}

function optionList(values, chosen) {
  return [h('option', { value: '' }, tt('choose'))].concat(values.map((v) => h('option', { value: v, selected: v === chosen }, v)));
}

// signalForm(kind, original): the form for a new signal or query (original
// null) or for a reply or feedback to the received message original.
function signalForm(kind, original) {
  const answering = kind === 'reply' || kind === 'feedback';
  const caps = state.caps || { categories: [], purposes: [], partners: [], allowed: {} };
  const os = original ? original.signal || {} : {};
  const form = h('form', { novalidate: true, id: 'signal-form', 'data-kind': kind });

  // what
  const typeSel = h('select', { name: 'type' }, optionList(caps.categories || [], original ? original.category || os.type : ''));
  const purposeSel = h('select', { name: 'purpose' }, optionList(caps.purposes || [], original ? original.purpose || os.purpose : ''));
  const what = h(
    'fieldset',
    { id: 'fs-what' },
    h('legend', {}, tt('fs_what')),
    field('f-type', 'category', typeSel, 'category_hint', true),
    field('f-purpose', 'purpose', purposeSel, 'purpose_hint', true),
  );

  // recipients (send only): those the policy allows for this kind and category
  let to = null;
  const toItems = h('div', {});
  const fillRecipients = () => {
    const allowed = ((caps.allowed || {})[kind] || {})[typeSel.value] || [];
    if (!typeSel.value) {
      toItems.replaceChildren(h('p', { class: 'hint' }, tt('recipients_choose_category')));
    } else if (allowed.length === 0) {
      toItems.replaceChildren(h('p', { class: 'hint' }, tt('recipients_none')));
    } else {
      toItems.replaceChildren(
        ...allowed.map((id, i) => {
          const p = (caps.partners || []).find((x) => x.id === id);
          return choice('checkbox', 'to', 'f-to-' + i, id, p ? `${p.org} (${p.role})` : id, null, false);
        }),
      );
    }
  };
  if (!answering) {
    to = group('fs-to', 'fs_recipients', 'recipients_hint', [toItems], true);
    typeSel.addEventListener('change', fillRecipients);
    fillRecipients();
  }

  const summary = h('textarea', { name: 'summary', rows: '5' });

  // nature and grading
  const defaultNature = kind === 'signal' ? 'soft' : 'hard';
  const nature = group('fs-nature', 'fs_nature', null, [
    choice('radio', 'nature', 'f-nature-hard', 'hard', tt('nature_hard'), tt('nature_hard_hint'), defaultNature === 'hard'),
    choice('radio', 'nature', 'f-nature-soft', 'soft', tt('nature_soft'), tt('nature_soft_hint'), defaultNature === 'soft'),
  ]);
  const srcSel = h('select', { name: 'grading-source' }, [h('option', { value: '' }, tt('choose'))].concat(SOURCES.map((v) => h('option', { value: v }, tt('src_' + v)))));
  const infSel = h('select', { name: 'grading-information' }, [h('option', { value: '' }, tt('choose'))].concat(CREDIBILITY.map((v) => h('option', { value: v }, tt('inf_' + v)))));
  const grading = group('fs-grading', 'fs_grading', 'grading_intro', [
    field('f-grading-source', 'grading_source', srcSel, null, true),
    field('f-grading-information', 'grading_information', infSel, null, true),
  ]);
  const syncGrading = () => {
    grading.hidden = !form.querySelector('#f-nature-soft').checked;
  };
  nature.addEventListener('change', syncGrading);

  // handling (TLP)
  const handling = group(
    'fs-handling',
    'fs_handling',
    'handling_hint',
    [choice('radio', 'handling', 'f-tlp-none', '', tt('tlp_none'), tt('tlp_none_hint'), !original)].concat(
      TLP.map((v, i) => {
        const c = choice('radio', 'handling', 'f-tlp-' + i, v, '', tt('tlp_' + v + '_hint'), original ? os.handling === v : false);
        const label = c.querySelector('label');
        label.append(tlpBadge(v), ' ', tt('tlp_' + v));
        return c;
      }),
    ),
  );
  if (original && !os.handling) {
    handling.querySelector('#f-tlp-none').checked = true;
  }

  // observation
  const observedAt = h('input', { type: 'datetime-local', name: 'observed_at', step: '60' });
  const observedBy = h('input', { type: 'text', name: 'observed_by', maxlength: '128', autocomplete: 'off' });
  const observed = h(
    'fieldset',
    { id: 'fs-observed' },
    h('legend', {}, tt('fs_observed')),
    field('f-observed-at', 'observed_at', observedAt, 'observed_at_hint', false),
    field('f-observed-by', 'observed_by', observedBy, 'observed_by_hint', false),
  );

  // subjects
  const subjectList = h('div', { id: 'subject-list' });
  const subjects = group('fs-subjects', 'fs_subjects', 'subjects_hint', [subjectList], false);
  const addBtn = h('button', { type: 'button', class: 'secondary', id: 'subject-add' }, tt('subject_add'));
  subjects.append(addBtn);
  const renumber = () => {
    [...subjectList.children].forEach((row, i) => {
      row.querySelector('legend').replaceChildren(tt('subject_n', { n: i + 1 }));
      row.querySelector('.subject-remove').replaceChildren(tt('subject_remove', { n: i + 1 }));
    });
  };
  let subjectSerial = 0;
  const addSubject = (kindValue, value) => {
    const n = subjectSerial++;
    const base = 'f-subj-' + n;
    const kindSel = h(
      'select',
      { name: 'subject-kind' },
      Object.keys(SUBJECT_KINDS).map((k) => h('option', { value: k, selected: k === kindValue }, tt('subj_' + k))),
    );
    const parts = h('div', { class: 'subject-parts' });
    const fillParts = (prefill) => {
      const defs = SUBJECT_KINDS[kindSel.value] || [];
      parts.replaceChildren(
        ...defs.map(([key, type], i) => {
          const input = h('input', { type, 'data-part': key, autocomplete: 'off' });
          if (prefill && i === 0) {
            input.value = prefill; // a received subject is one line: it goes in the first part
          }
          return field(base + '-' + key, 'part_' + key, input, null, false);
        }),
      );
    };
    kindSel.addEventListener('change', () => fillParts(null));
    const remove = h('button', { type: 'button', class: 'secondary subject-remove' });
    const row = h(
      'fieldset',
      { class: 'subject', 'data-subject': String(n) },
      h('legend', {}),
      h('p', { class: 'field-error', id: base + '-error', hidden: true }),
      field(base + '-kind', 'subject_kind', kindSel, null, false),
      parts,
      h('div', { class: 'actions' }, remove),
    );
    remove.addEventListener('click', () => {
      row.remove();
      renumber();
      addBtn.focus();
    });
    fillParts(value || null);
    subjectList.append(row);
    renumber();
    return row;
  };
  addBtn.addEventListener('click', () => {
    const row = addSubject('address', null);
    row.querySelector('select').focus();
  });
  if (original && Array.isArray(os.subjects) && kind === 'reply') {
    os.subjects.forEach((x) => addSubject(SUBJECT_KINDS[x.kind] ? x.kind : 'address', x.value));
  }

  const result = h('div', { id: 'form-result', tabindex: '-1' });
  const summaryBox = h('div', { id: 'error-summary', tabindex: '-1', hidden: true });
  const checkBtn = h('button', { type: 'button', class: 'secondary', id: 'check-button' }, tt('check_button'));
  const sendBtn = h(
    'button',
    { type: 'submit', id: 'send-button' },
    tt(kind === 'reply' ? 'reply_send_button' : kind === 'feedback' ? 'feedback_send_button' : 'send_button'),
  );

  form.append(
    ...[
      summaryBox,
      what,
      to,
      field('f-summary', 'summary', summary, 'summary_hint', false),
      nature,
      grading,
      handling,
      observed,
      subjects,
      h('div', { class: 'actions' }, checkBtn, sendBtn),
      result,
    ].filter((n) => n),
  );
  syncGrading();

  // The request from what is on screen. rowOf[i]: the subject row that
  // became subjects[i] (empty rows are left out).
  const collect = () => {
    const sig = {};
    if (typeSel.value) {
      sig.type = typeSel.value;
    }
    if (purposeSel.value) {
      sig.purpose = purposeSel.value;
    }
    if (summary.value.trim()) {
      sig.summary = summary.value;
    }
    const nat = form.querySelector('input[name="nature"]:checked');
    if (nat) {
      sig.nature = nat.value;
    }
    if (nat && nat.value === 'soft' && (srcSel.value || infSel.value)) {
      sig.grading = {};
      if (srcSel.value) {
        sig.grading.source = srcSel.value;
      }
      if (infSel.value) {
        sig.grading.information = infSel.value;
      }
    }
    const tlp = form.querySelector('input[name="handling"]:checked');
    if (tlp && tlp.value) {
      sig.handling = tlp.value;
    }
    if (observedAt.value) {
      const d = new Date(observedAt.value);
      sig.observed_at = Number.isNaN(d.getTime()) ? observedAt.value : d.toISOString();
    }
    if (observedBy.value.trim()) {
      sig.observed_by = observedBy.value.trim();
    }
    const rowOf = [];
    const subj = [];
    for (const row of subjectList.children) {
      const values = [...row.querySelectorAll('[data-part]')].map((i) => i.value.trim()).filter((v) => v !== '');
      if (values.length === 0) {
        continue;
      }
      subj.push({ kind: row.querySelector('select').value, value: values.join(', ') });
      rowOf.push(row);
    }
    if (subj.length) {
      sig.subjects = subj;
    }
    const recipients = to ? [...form.querySelectorAll('input[name="to"]:checked')].map((i) => i.value) : [];
    return { sig, recipients, rowOf };
  };

  // The problems on screen, drawn again when the language changes.
  let shown = null;
  const clearErrors = () => {
    shown = null;
    for (const p of form.querySelectorAll('.field-error')) {
      p.hidden = true;
      p.textContent = '';
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) {
      el.removeAttribute('aria-invalid');
      const d = (el.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && !x.endsWith('-error'));
      if (d.length) {
        el.setAttribute('aria-describedby', d.join(' '));
      } else {
        el.removeAttribute('aria-describedby');
      }
    }
    for (const fs of form.querySelectorAll('fieldset.invalid')) {
      fs.classList.remove('invalid');
    }
    summaryBox.hidden = true;
    summaryBox.replaceChildren();
    result.replaceChildren();
  };

  // target(parts, rowOf): where a problem at this JSON path belongs:
  // {error: the <p> for its text, controls: what gets aria-invalid, focus,
  // label}; null for a path no field stands for.
  const target = (parts, rowOf) => {
    const one = (id) => {
      const el = form.querySelector('#' + id);
      return el ? { error: form.querySelector('#' + id + '-error'), controls: [el], focus: el, label: form.querySelector('label[for="' + id + '"]') } : null;
    };
    const grp = (id) => {
      const fs = form.querySelector('#' + id);
      if (!fs) {
        return null;
      }
      const controls = [...fs.querySelectorAll('input, select, textarea')];
      return { error: form.querySelector('#' + id + '-error'), controls, focus: controls[0] || fs, label: fs.querySelector('legend'), fieldset: fs };
    };
    const [head, second, third] = parts;
    switch (head) {
      case 'type':
        return one('f-type');
      case 'purpose':
        return one('f-purpose');
      case 'to':
        return grp('fs-to');
      case 'summary':
        return one('f-summary');
      case 'nature':
        return grp('fs-nature');
      case 'grading':
        if (second === 'source') {
          return one('f-grading-source');
        }
        if (second === 'information') {
          return one('f-grading-information');
        }
        return grp('fs-grading');
      case 'handling':
        return grp('fs-handling');
      case 'observed_at':
        return one('f-observed-at');
      case 'observed_by':
        return one('f-observed-by');
      case 'subjects': {
        if (typeof second === 'number' && rowOf[second]) {
          const row = rowOf[second];
          const id = row.querySelector(':scope > .field-error').id;
          const controls = third === 'kind' ? [row.querySelector('select')] : [...row.querySelectorAll('[data-part]')];
          return { error: row.querySelector('#' + id), controls, focus: controls[0], label: row.querySelector('legend'), fieldset: row };
        }
        return grp('fs-subjects');
      }
      default:
        return null;
    }
  };

  // showProblems(problems, more, rowOf, quiet): each problem next to its
  // field, a list of them all at the top, focus on the first field that is
  // wrong; quiet: the same problems in another language, where the user is
  // (nothing announced, the focus left where it is).
  const showProblems = (problems, more, rowOf, quiet) => {
    clearErrors();
    shown = { problems, more, rowOf };
    const items = [];
    let first = null;
    let marked = 0;
    for (const p of problems) {
      const parts = pathParts(p.path);
      const where = target(parts, rowOf);
      // The sentence in the page's language; the node's English text only
      // as a technical detail in the list at the top.
      const text = problemSentence(p, kind);
      let detail = p.problem || '';
      if (detail && p.path) {
        detail = p.path + ': ' + detail;
      }
      if (p.allowed) {
        detail += (/[.!?]$/.test(detail) || !detail ? ' ' : '. ') + 'Allowed: ' + p.allowed;
      }
      if (where && where.error) {
        where.error.textContent = where.error.textContent ? where.error.textContent + ' ' + text : text;
        where.error.hidden = false;
        for (const c of where.controls) {
          c.setAttribute('aria-invalid', 'true');
          const d = (c.getAttribute('aria-describedby') || '').split(' ').filter((x) => x);
          if (!d.includes(where.error.id)) {
            d.push(where.error.id);
          }
          c.setAttribute('aria-describedby', d.join(' '));
        }
        if (where.fieldset) {
          where.fieldset.classList.add('invalid');
        }
        if (!first) {
          first = where.focus;
        }
        const link = h('a', { href: '#' + where.focus.id }, (where.label ? where.label.textContent.replace(/\s*\*.*$/, '') : t('error_other')) + ': ' + text);
        link.addEventListener('click', (ev) => {
          ev.preventDefault(); // the fragment holds the route
          where.focus.focus();
        });
        items.push(h('li', {}, link, techDetail(detail.trim())));
        marked++;
      } else {
        items.push(h('li', {}, text, techDetail(detail.trim())));
      }
    }
    const n = problems.length;
    // "Correct the marked field" only when a field is marked.
    const heading = marked === 0 ? (n === 1 ? t('error_problems_unmarked_one') : t('error_problems_unmarked_many', { n })) : n === 1 ? t('error_problems_one') : t('error_problems_many', { n });
    summaryBox.replaceChildren(
      h(
        'div',
        { class: 'notice error' },
        h('h2', {}, heading),
        h('ul', {}, items),
        more ? h('p', {}, t('error_more', { n: more })) : null,
      ),
    );
    summaryBox.hidden = false;
    if (!quiet) {
      announce(heading);
      (first || summaryBox).focus();
    }
  };
  formRelabel.set(form, () => {
    if (shown) {
      showProblems(shown.problems, shown.more, shown.rowOf, true);
    }
  });

  const requests = () => {
    const c = collect();
    if (answering) {
      return {
        c,
        check: { for: 'reply', msg_id: original.msg_id, kind, signal: c.sig },
        path: '/v1/inbox/' + original.msg_id + '/reply?wait=' + SEND_WAIT_MS,
        body: { kind, signal: c.sig },
      };
    }
    return {
      c,
      check: { for: 'send', kind, to: c.recipients, signal: c.sig },
      path: '/v1/messages?wait=' + SEND_WAIT_MS,
      body: { kind, to: c.recipients, signal: c.sig },
    };
  };

  const validate = async (r) => {
    const v = (await api('POST', '/v1/messages/validate', r.check)).data;
    if (!v.valid) {
      showProblems(v.problems || [], v.more || 0, r.c.rowOf);
      return false;
    }
    return true;
  };

  const busy = (on) => {
    checkBtn.disabled = on;
    sendBtn.disabled = on;
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  };

  // failed(e, r): an error answer to a check or a send, shown where it
  // belongs: a 400 naming fields (JSON pointers into the request) next to
  // those fields, a refusal by the policy or the broker (422) with its
  // reason, anything else as it is.
  const failed = (e, r) => {
    result.replaceChildren();
    if (e instanceof ApiError && e.status === 400 && Array.isArray(e.problem.errors) && e.problem.errors.length) {
      showProblems(
        e.problem.errors.map((x) => ({ path: x.field, code: 'request', problem: x.problem, allowed: x.allowed })),
        0,
        r.c.rowOf,
      );
    } else if (e instanceof ApiError && e.status === 422) {
      const p = e.problem;
      const reason = () => (p.reason ? reasonText(p.reason, p.rule) : problemText(e));
      result.replaceChildren(
        h(
          'div',
          { class: 'notice error', role: 'alert' },
          h('p', {}, lt(() => t('sent_refused', { detail: reason() }))),
          techDetail(p.detail),
          p.msg_id ? h('p', {}, h('a', { href: '#/status/' + p.msg_id }, tt('follow_link'))) : null,
        ),
      );
      result.focus();
    } else {
      result.replaceChildren(errorNotice(e));
      result.focus();
    }
  };

  checkBtn.addEventListener('click', async () => {
    const r = requests();
    busy(true);
    try {
      clearErrors();
      if (await validate(r)) {
        result.replaceChildren(h('p', { class: 'notice ok' }, tt('check_ok')));
        result.focus();
      }
    } catch (e) {
      failed(e, r);
    } finally {
      busy(false);
    }
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = requests();
    busy(true);
    clearErrors();
    result.replaceChildren(h('p', { class: 'notice' }, tt('sending')));
    try {
      if (!(await validate(r))) {
        result.replaceChildren();
        return;
      }
      const res = await api('POST', r.path, r.body);
      const id = res.data.msg_id;
      const accepted = res.status === 201 || res.data.state === 'accepted';
      state.busyForm = false;
      const done = h(
        'div',
        { class: 'notice ' + (accepted ? 'ok' : 'warn'), id: 'send-result', tabindex: '-1' },
        h('p', {}, t(accepted ? 'sent_accepted' : 'sent_pending', { id })),
        h('p', {}, h('a', { href: '#/status/' + id }, t('follow_link'))),
      );
      form.replaceWith(done);
      done.focus();
    } catch (e) {
      failed(e, r);
    } finally {
      busy(false);
    }
  });
  return form;
}

// pathParts(PATH): a problem's path as a list of names and indexes. Takes a
// JSON Pointer ("/signal/subjects/0/value") or the dry run's form
// ("subjects[0].value"); a leading "signal" is dropped.
function pathParts(path) {
  if (typeof path !== 'string' || path === '') {
    return [];
  }
  let parts = [];
  if (path.startsWith('/')) {
    parts = path
      .slice(1)
      .split('/')
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  } else {
    path.replace(/([^.[\]]+)|\[(\d+)\]/g, (m, name, idx) => {
      parts.push(idx !== undefined ? Number(idx) : name);
      return m;
    });
  }
  if (parts[0] === 'signal') {
    parts = parts.slice(1);
  }
  return parts;
}

// ---- sent and follow-up ------------------------------------------------------

function recipientCounts(st) {
  const rc = st.recipients || [];
  return {
    total: rc.length,
    receipted: rc.filter((r) => r.state === 'receipted').length,
    refused: rc.filter((r) => r.state === 'refused' || r.state === 'rejected').length,
    replied: rc.filter((r) => r.replied).length,
  };
}

function msgStateBadge(s) {
  const tone = s === 'accepted' ? 'ok' : s === 'pending' ? 'wait' : 'bad';
  return stateBadge(STRINGS.nl['msg_state_' + s] !== undefined ? t('msg_state_' + s) : s, tone);
}

async function viewSent() {
  const d = (await api('GET', '/v1/sent')).data;
  const list = d.messages || [];
  let body;
  if (list.length === 0) {
    body = h('p', { class: 'notice' }, t('sent_empty'));
  } else {
    body = h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { id: 'sent-table' },
        h('caption', {}, t('sent_caption')),
        h(
          'thead',
          {},
          h('tr', {}, ['col_message', 'col_created', 'col_state', 'col_recipients'].map((k) => h('th', { scope: 'col' }, t(k)))),
        ),
        h(
          'tbody',
          {},
          list.map((st) =>
            h(
              'tr',
              {},
              h('td', {}, h('a', { href: '#/status/' + st.msg_id }, cap(kindName(st.kind)) + ': ' + (st.category || ''))),
              h('td', {}, timeEl(st.created_at)),
              h('td', {}, msgStateBadge(st.state)),
              h('td', {}, t('recipients_summary', recipientCounts(st))),
            ),
          ),
        ),
      ),
    );
  }
  return [
    h('h1', { tabindex: '-1' }, t('sent_title')),
    h('p', { class: 'intro' }, t('sent_intro')),
    body,
    d.more ? h('p', {}, t('sent_more', { n: d.more })) : null,
  ];
}

async function viewStatus(id) {
  const st = (await api('GET', '/v1/messages/' + id)).data.status;
  if (st.direction === 'received') {
    window.location.replace('#/message/' + id);
    return [h('h1', { tabindex: '-1' }, t('loading'))];
  }
  const rcpts = st.recipients || [];
  const isQuery = st.kind === 'query';
  const rows = rcpts.map((r) => {
    const key = 'rcpt_state_' + r.state;
    const tone = r.state === 'receipted' ? 'ok' : r.state === 'refused' || r.state === 'rejected' || r.state === 'expired' ? 'bad' : 'wait';
    return h(
      'tr',
      {},
      h('th', { scope: 'row' }, partnerName(r.id)),
      h('td', {}, stateBadge(STRINGS.nl[key] !== undefined ? t(key) : r.state, tone)),
      h('td', {}, r.receipted_at ? timeEl(r.receipted_at) : t('none')),
      h('td', {}, r.reason ? reasonText(r.reason, st.rule) : t('none')),
      isQuery ? h('td', {}, r.replied ? t('yes') : t('no')) : null,
    );
  });
  const cols = ['col_recipient', 'col_state', 'col_receipted_at', 'col_reason'].concat(isQuery ? ['col_replied'] : []);
  // Replies are in the status; feedback on a signal is found in the inbox
  // (the message it answers is its in_reply_to).
  const replies = (st.replies || []).slice();
  if (hasScope('read')) {
    const inbox = (await api('GET', '/v1/inbox?unhandled=false')).data.messages || [];
    for (const m of inbox) {
      if (m.in_reply_to === id && !replies.some((r) => r.msg_id === m.msg_id)) {
        replies.push({ msg_id: m.msg_id, from: m.from, received_at: m.received_at, kind: m.kind });
      }
    }
  }
  const waiting = rcpts.filter((r) => !r.replied && r.state !== 'refused' && r.state !== 'rejected');
  return [
    h('h1', { tabindex: '-1' }, cap(t('status_title', { kind: kindName(st.kind), category: st.category || '' }))),
    h('p', {}, msgStateBadge(st.state)),
    st.state === 'rejected' && st.reason
      ? h('div', { class: 'notice error' }, t('broker_reason', { reason: reasonText(st.reason, st.rule) }), techDetail(st.detail))
      : null,
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, t('f_msg_id')),
      h('dd', { class: 'mono' }, st.msg_id),
      h('dt', {}, t('f_category')),
      h('dd', {}, st.category || ''),
      h('dt', {}, t('f_purpose')),
      h('dd', {}, st.purpose || ''),
      h('dt', {}, t('f_created_at')),
      h('dd', {}, timeEl(st.created_at)),
      h('dt', {}, t('f_expires_at')),
      h('dd', {}, timeEl(st.expires_at)),
      st.in_reply_to ? [h('dt', {}, t('f_in_reply_to')), h('dd', {}, h('a', { href: '#/message/' + st.in_reply_to, class: 'mono' }, st.in_reply_to))] : null,
    ),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { id: 'recipient-table' },
        h('caption', {}, t('status_caption')),
        h('thead', {}, h('tr', {}, cols.map((k) => h('th', { scope: 'col' }, t(k))))),
        h('tbody', {}, rows),
      ),
    ),
    h('h2', {}, t(isQuery ? 'replies_title' : 'feedback_list_title')),
    replies.length
      ? h(
          'ul',
          { id: 'reply-list' },
          replies.map((r) =>
            h(
              'li',
              {},
              h('a', { href: '#/message/' + r.msg_id }, t(r.kind === 'feedback' ? 'feedback_from' : 'reply_from', { from: partnerName(r.from), time: fmtTime(r.received_at) })),
            ),
          ),
        )
      : h('p', {}, t(isQuery ? 'replies_none' : 'feedback_none')),
    isQuery ? h('p', {}, waiting.length ? t('answered_none', { list: waiting.map((r) => partnerName(r.id)).join(', ') }) : t('answered_all')) : null,
  ];
}

boot();
