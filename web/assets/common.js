// Shared by every page: the page's data, translations, DOM building (text only through
// textContent), money, and the API client (session cookie + CSRF header, or a bearer
// token where the server sets no cookie).
'use strict';
(function () {
  const boot = JSON.parse(document.getElementById('boot').textContent || '{}');
  const dict = boot.dict || {};
  const P = (window.Potok = { boot, lang: boot.lang || 'ru' });

  // A translated text with {name} placeholders filled.
  P.t = (key, vars) => {
    let s = Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : key;
    for (const [k, v] of Object.entries(vars || {})) s = s.split('{' + k + '}').join(String(v));
    return s;
  };

  // el('div', {class: 'x', onclick: f}, 'text', child...) — strings become text nodes.
  P.el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'value') e.value = v;
      else if (k === 'checked') e.checked = !!v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  };
  P.clear = (e) => { while (e.firstChild) e.removeChild(e.firstChild); return e; };
  P.app = () => document.getElementById('app');

  // Money arrives as integer minor units (kopecks for RUB).
  P.money = (minor, currency) => {
    const cur = currency || 'RUB';
    try {
      const f = new Intl.NumberFormat(P.lang === 'ru' ? 'ru-RU' : 'en-US', { style: 'currency', currency: cur });
      const digits = f.resolvedOptions().maximumFractionDigits;
      return f.format(Number(minor) / Math.pow(10, digits));
    } catch (_) {
      return (Number(minor) / 100).toFixed(2) + ' ' + cur;
    }
  };
  // "500" or "500,50" typed by a person → minor units (NaN when not a number).
  P.toMinor = (text) => {
    const s = String(text).trim().replace(/\s/g, '').replace(',', '.');
    if (!/^\d+(\.\d{1,2})?$/.test(s)) return NaN;
    const [w, f] = s.split('.');
    return Number(w) * 100 + Number((f || '').padEnd(2, '0') || 0);
  };
  // The API's goals and donations with both spellings of their fields accepted.
  P.goal = (g) => g && ({ ...g,
    target: g.target_amount !== undefined ? g.target_amount : g.target,
    current: g.current_amount !== undefined ? g.current_amount : g.current,
    active: g.is_active !== undefined ? g.is_active : g.active });
  P.anonymous = (d) => !!(d.is_anonymous !== undefined ? d.is_anonymous : d.anonymous);
  P.time = (ms) => new Date(ms).toLocaleString(P.lang === 'ru' ? 'ru-RU' : 'en-US');
  P.duration = (secs) => {
    const s = Math.max(0, Math.floor(secs));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + ':' : '') + String(m).padStart(h ? 2 : 1, '0') + ':' + String(r).padStart(2, '0');
  };

  const cookie = (name) => {
    for (const part of document.cookie.split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k === name) return decodeURIComponent(v.join('='));
    }
    return null;
  };
  P.cookie = cookie;
  // The session: the potok_session cookie (the server says so with potok_csrf), or, on a
  // server that sets no cookies, the API token from the login kept in localStorage.
  P.token = () => { try { return localStorage.getItem('potok_token'); } catch (_) { return null; } };
  P.signedIn = () => !!(cookie('potok_csrf') || P.token());

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || ('HTTP ' + status));
      this.status = status;
      this.code = (body && body.code) || 'HTTP_' + status;
      this.body = body;
    }
  }
  P.ApiError = ApiError;

  P.api = async (method, path, body) => {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const token = P.token();
    if (token) headers.authorization = 'Bearer ' + token;
    const csrf = cookie('potok_csrf');
    if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf;
    let resp;
    try {
      resp = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, { code: 'NETWORK', message: P.t('error.network') });
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
    if (!resp.ok) {
      if (resp.status === 401 && token) { try { localStorage.removeItem('potok_token'); } catch (_) { /* private mode */ } }
      throw new ApiError(resp.status, data);
    }
    return data;
  };
  // GET that answers null for 404 (an API this server does not have yet, or no such thing).
  P.maybe = async (path) => {
    try { return await P.api('GET', path); } catch (e) { if (e.status === 404 || e.status === 405) return null; throw e; }
  };

  let meP = null;
  P.me = () => {
    if (!P.signedIn()) return Promise.resolve(null);
    if (!meP) meP = P.api('GET', '/api/v1/me').catch(() => null);
    return meP;
  };

  P.login = async (username, password) => {
    const r = await P.api('POST', '/api/v1/sessions', { username, password, cookie: true });
    if (!cookie('potok_csrf') && r && r.token) localStorage.setItem('potok_token', r.token);
    meP = null;
    return r;
  };
  P.logout = async () => {
    if (cookie('potok_csrf')) { try { await P.api('DELETE', '/api/v1/sessions/current'); } catch (_) { /* gone already */ } }
    try { localStorage.removeItem('potok_token'); } catch (_) { /* private mode */ }
    meP = null;
  };

  // A status line for errors and notices.
  P.notice = (parent, text, kind) => {
    let n = parent.querySelector(':scope > .notice');
    if (!n) { n = P.el('p', { class: 'notice', role: 'status' }); parent.prepend(n); }
    n.className = 'notice ' + (kind || 'info');
    n.textContent = text;
    return n;
  };
  P.errorText = (e) => P.t('error.generic', { message: (e && e.message) || String(e) });

  // The gateway URL on this origin.
  P.gatewayUrl = () => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/v1/realtime';

  // The navigation shows who is signed in.
  const nav = async () => {
    const slot = document.getElementById('nav-user');
    if (!slot) return;
    const me = await P.me();
    if (!me) return;
    P.clear(slot).append(P.el('a', { href: '/account', id: 'nav-account' }, me.username));
  };
  document.addEventListener('DOMContentLoaded', nav);
  if (document.readyState !== 'loading') nav();
})();
