// The chat panel over the real-time gateway: history on join, live events in offset
// order, resume with `since` after a reconnect, emotes, mentions, reactions, donation
// highlights, and moderators' actions inline. Every text goes in with textContent.
'use strict';
(function () {
  const P = window.Potok;
  const { el, t } = P;
  const REACTIONS = ['👍', '❤️', '😂', '🔥', '😮'];
  const MAX_SHOWN = 300;

  // Splits a message's text into text, :emote: and @mention pieces.
  const pieces = (content, me) => {
    const text = (content && content.text) || '';
    const emotes = new Set((content && content.emojis) || []);
    const mentions = new Set(((content && content.mentions) || []).map((m) => m.username));
    const out = [];
    const re = /:([A-Za-z0-9_]{1,32}):|@([a-z0-9_-]{3,32})/g;
    let last = 0, m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[1] && emotes.has(m[1])) out.push(el('span', { class: 'emote', title: m[0] }, m[1]));
      else if (m[2] && mentions.has(m[2])) out.push(el('span', { class: 'mention' + (me && m[2] === me ? ' me' : '') }, m[0]));
      else out.push(m[0]);
      last = re.lastIndex;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  };

  const colour = (name) => {
    let h = 0;
    for (const c of name || '') h = (h * 31 + c.charCodeAt(0)) % 360;
    return 'hue-' + (h % 12);
  };

  // opts: {room, me: username|null, moderator: bool, overlayToken, readOnly, limit}
  P.Chat = function (root, opts) {
    const room = opts.room;
    const me = opts.me || null;
    const list = el('ol', { class: 'chat-lines', 'aria-live': 'polite' });
    const status = el('p', { class: 'chat-status' }, t('chat.connecting'));
    const input = el('input', { type: 'text', maxlength: '500', placeholder: t('chat.placeholder'), 'aria-label': t('chat.placeholder'), class: 'chat-input' });
    const send = el('button', { type: 'submit', class: 'chat-send' }, t('chat.send'));
    const form = el('form', { class: 'chat-form' }, input, send);
    const byId = new Map();
    let ws = null, offset = null, refs = 0, retry = 500, closed = false;
    const pending = new Map();
    const listeners = [];

    root.classList.add('chat');
    root.append(status, list);
    if (!opts.readOnly) {
      if (me) root.append(form);
      else root.append(el('p', { class: 'chat-login' }, el('a', { href: '/login?next=' + encodeURIComponent(location.pathname) }, t('chat.login'))));
    }

    const system = (text) => {
      list.append(el('li', { class: 'chat-system' }, text));
      trim();
    };
    const trim = () => {
      const limit = opts.limit || MAX_SHOWN;
      while (list.children.length > limit) {
        const first = list.firstElementChild;
        if (first.dataset.id) byId.delete(first.dataset.id);
        first.remove();
      }
      list.scrollTop = list.scrollHeight;
    };

    const reactionsRow = (msg) => {
      const row = el('span', { class: 'reactions' });
      for (const r of msg.reactions || []) {
        const mine = me && (r.users || []).includes(me);
        row.append(el('button', {
          type: 'button', class: 'reaction' + (mine ? ' mine' : ''), 'data-emoji': r.emoji,
          onclick: () => react(msg.id, r.emoji, !mine),
        }, r.emoji + ' ' + r.count));
      }
      return row;
    };

    const react = (id, emoji, on) => {
      P.api(on ? 'PUT' : 'DELETE', '/api/v1/chat/' + encodeURIComponent(room) + '/messages/' + encodeURIComponent(id) + '/reactions/' + encodeURIComponent(emoji))
        .catch((e) => system(P.errorText(e)));
    };

    const moderate = (id, action) => {
      const body = { action };
      if (action === 'timeout') body.seconds = 600;
      P.api('POST', '/api/v1/chat/' + encodeURIComponent(room) + '/messages/' + encodeURIComponent(id) + '/moderate', body)
        .catch((e) => system(P.errorText(e)));
    };

    const line = (msg) => {
      const li = el('li', { class: 'chat-line', 'data-id': msg.id });
      if (msg.is_donation_message || msg.is_highlighted) li.classList.add('highlighted');
      if (me && ((msg.content && msg.content.mentions) || []).some((m) => m.username === me)) li.classList.add('mentions-me');
      if (msg.is_donation_message && msg.donation_amount) {
        li.append(el('span', { class: 'donation-badge' }, t('chat.donated', { amount: P.money(msg.donation_amount, msg.donation_currency || 'RUB') })), ' ');
      }
      li.append(el('span', { class: 'author ' + colour(msg.username) }, msg.username || '?'), ': ');
      li.append(el('span', { class: 'text' }, ...pieces(msg.content, me)));
      if (!opts.readOnly) {
        const tools = el('span', { class: 'tools' });
        if (me) {
          const pick = el('span', { class: 'react-pick' });
          for (const e of REACTIONS) pick.append(el('button', { type: 'button', class: 'react-add', title: t('chat.react'), onclick: () => react(msg.id, e, true) }, e));
          tools.append(pick);
        }
        if (opts.moderator && msg.username !== me) {
          tools.append(
            el('button', { type: 'button', class: 'mod-delete', onclick: () => moderate(msg.id, 'delete') }, t('chat.delete')),
            el('button', { type: 'button', class: 'mod-timeout', onclick: () => moderate(msg.id, 'timeout') }, t('chat.timeout')),
            el('button', { type: 'button', class: 'mod-ban', onclick: () => moderate(msg.id, 'ban') }, t('chat.ban')));
        } else if (opts.moderator) {
          tools.append(el('button', { type: 'button', class: 'mod-delete', onclick: () => moderate(msg.id, 'delete') }, t('chat.delete')));
        }
        li.append(tools);
      }
      li.append(reactionsRow(msg));
      return li;
    };

    const show = (msg) => {
      const old = byId.get(msg.id);
      const li = line(msg);
      if (old) old.replaceWith(li); else list.append(li);
      byId.set(msg.id, li);
      trim();
      for (const f of listeners) f(msg);
    };

    const apply = (data) => {
      switch (data && data.kind) {
        case 'message': case 'edited': show(data.message); break;
        case 'deleted': {
          const li = byId.get(data.message_id);
          if (li) { li.classList.add('deleted'); P.clear(li).append(el('span', { class: 'text' }, t('chat.deleted'))); }
          break;
        }
        case 'user_sanctioned':
          for (const id of data.hidden || []) { const li = byId.get(id); if (li) li.remove(); byId.delete(id); }
          break;
        case 'cleared': P.clear(list); byId.clear(); system(t('chat.cleared')); break;
        case 'reactions': {
          const li = byId.get(data.message_id);
          if (li) { const row = li.querySelector('.reactions'); if (row) row.replaceWith(reactionsRow({ id: data.message_id, reactions: data.reactions })); }
          break;
        }
        default: break;
      }
    };

    const connect = () => {
      ws = new WebSocket(P.gatewayUrl());
      ws.addEventListener('open', () => {
        retry = 500;
        const token = P.token();
        if (opts.overlayToken) ws.send(JSON.stringify({ type: 'auth', overlay_token: opts.overlayToken }));
        else if (token) ws.send(JSON.stringify({ type: 'auth', token }));
        const sub = { type: 'subscribe', channel: 'chat:' + room };
        if (offset !== null) sub.since = offset;
        ws.send(JSON.stringify(sub));
      });
      ws.addEventListener('message', (ev) => {
        let f;
        try { f = JSON.parse(ev.data); } catch (_) { return; }
        if (f.type === 'subscribed' && f.channel === 'chat:' + room) {
          status.textContent = '';
          status.hidden = true;
          if (f.missed && f.recovered) { for (const m of f.missed) apply(m.data); }
          else { P.clear(list); byId.clear(); for (const m of f.history || []) show(m); }
          offset = f.offset;
          if (typeof f.present === 'number' && opts.onPresent) opts.onPresent(f.present);
        } else if (f.type === 'event' && f.channel === 'chat:' + room) {
          if (offset !== null && f.offset <= offset) return;
          offset = f.offset;
          apply(f.data);
        } else if (f.type === 'ack') {
          const p = pending.get(f.ref);
          pending.delete(f.ref);
          if (f.held) system(t('chat.held'));
          if (p) p.resolve(f);
        } else if (f.type === 'error') {
          const p = pending.get(f.ref);
          if (p) { pending.delete(f.ref); p.reject(f); }
          system(P.t('error.generic', { message: f.message || f.code }));
        }
      });
      ws.addEventListener('close', () => {
        if (closed) return;
        status.hidden = false;
        status.textContent = t('chat.reconnecting');
        for (const p of pending.values()) p.reject({ message: 'disconnected' });
        pending.clear();
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 10000);
      });
    };

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text || !ws || ws.readyState !== 1) return;
      const ref = ++refs;
      ws.send(JSON.stringify({ type: 'send', channel: 'chat:' + room, text, ref }));
      new Promise((resolve, reject) => pending.set(ref, { resolve, reject }))
        .then(() => { input.value = ''; })
        .catch(() => { /* shown as a system line */ });
    });

    connect();
    return {
      onMessage: (f) => listeners.push(f),
      close: () => { closed = true; if (ws) ws.close(); },
    };
  };
})();
