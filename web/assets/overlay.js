// OBS browser-source overlays /overlay/{token}/{alerts|goal|chat|competition}: a
// transparent 1920x1080 page fed by the gateway's overlay:<channel> feed, authenticated
// with the overlay token (not an account token; revocable).
'use strict';
(function () {
  const P = window.Potok;
  const { el, t } = P;
  const token = P.boot.token;
  const kind = P.boot.kind;
  const app = P.clear(P.app());
  app.classList.add('overlay', 'overlay-' + kind);
  document.documentElement.classList.add('transparent');

  const competitionView = (c) => {
    if (!c) return el('div', { class: 'competition' });
    const total = (c.options || []).reduce((s, o) => s + (o.total || 0), 0);
    return el('div', { class: 'competition', 'data-id': c.id },
      el('p', { class: 'competition-title' }, c.title),
      ...(c.options || []).map((o) => {
        const bar = el('div', { class: 'goal-fill' });
        bar.style.width = (total ? (100 * o.total) / total : 0).toFixed(2) + '%';
        return el('div', { class: 'competition-option', 'data-id': o.id, 'data-total': String(o.total) },
          el('span', { class: 'label' }, o.label), el('div', { class: 'goal-track' }, bar), el('span', { class: 'total' }, P.money(o.total, 'RUB')));
      }));
  };

  (async () => {
    let state;
    try {
      state = await P.api('GET', '/api/v1/overlay/' + encodeURIComponent(token));
    } catch (e) {
      if (e.status === 401 || e.status === 403) app.append(el('p', { class: 'revoked' }, t('overlay.revoked')));
      document.body.dataset.state = 'error';
      return;
    }
    const channel = state.channel;
    if (kind === 'chat') {
      const box = el('div', { class: 'chat-box' });
      app.append(box);
      P.Chat(box, { room: channel, readOnly: true, overlayToken: token, limit: 15 });
      document.body.dataset.state = 'ready';
      return;
    }
    const speechUrl = (d) => '/api/v1/overlay/' + encodeURIComponent(token) + '/speech/' + encodeURIComponent(d.id) + '?lang=' + (P.lang === 'en' ? 'en' : 'ru');
    const alerts = kind === 'alerts' ? P.AlertQueue(app, state.alerts, { speechUrl }) : null;
    let goalEl = null, compEl = null;
    if (kind === 'goal') { goalEl = P.goalBar(state.goal); app.append(goalEl); }
    if (kind === 'competition') { compEl = competitionView(state.competition); app.append(compEl); }
    const apply = (f) => {
      const d = f.data || {};
      if (d.kind === 'donation' && alerts) alerts.push(d.donation, f.alert || d.alert);
      else if (d.kind === 'goal' && goalEl) { const n = P.goalBar(d.goal); goalEl.replaceWith(n); goalEl = n; }
      else if (d.kind === 'competition' && compEl) { const n = competitionView(d.competition); compEl.replaceWith(n); compEl = n; }
      else if ((d.kind === 'alerts' || d.kind === 'alert_settings') && alerts) alerts.setSettings(d.alerts);
    };
    // Subscribe from the offset the state was read at: every later event, each once.
    let offset = typeof state.offset === 'number' ? state.offset : null, retry = 500, stopped = false;
    const connect = () => {
      const ws = new WebSocket(P.gatewayUrl());
      ws.addEventListener('open', () => {
        retry = 500;
        ws.send(JSON.stringify({ type: 'auth', overlay_token: token }));
        const sub = { type: 'subscribe', channel: 'overlay:' + channel };
        if (offset !== null) sub.since = offset;
        ws.send(JSON.stringify(sub));
      });
      ws.addEventListener('message', (ev) => {
        let f;
        try { f = JSON.parse(ev.data); } catch (_) { return; }
        if (f.type === 'subscribed') {
          for (const m of (f.recovered && f.missed) || []) {
            if (offset !== null && m.offset <= offset) continue;
            offset = m.offset;
            apply(m);
          }
          if (typeof f.offset === 'number' && (offset === null || f.offset > offset)) offset = f.offset;
          document.body.dataset.state = 'ready';
        } else if (f.type === 'event' && f.channel === 'overlay:' + channel) {
          if (offset !== null && f.offset <= offset) return;
          offset = f.offset;
          apply(f);
        } else if (f.type === 'error' && (f.code === 'UNAUTHORIZED' || f.code === 'FORBIDDEN')) {
          P.clear(app).append(el('p', { class: 'revoked' }, t('overlay.revoked')));
          stopped = true;
          ws.close();
        }
      });
      ws.addEventListener('close', () => { if (stopped) return; setTimeout(connect, retry); retry = Math.min(retry * 2, 10000); });
    };
    connect();
  })();
})();
