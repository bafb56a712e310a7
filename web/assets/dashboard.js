// The streamer dashboard /dashboard: ingest URLs and stream keys (create, rotate, revoke),
// stream health and a viewers chart, live chat with the held-message queue, donations,
// goals, alert settings with a preview, the request queue, and OBS overlay links. Parts
// whose API this server lacks say so and stay out of the way.
'use strict';
(function () {
  const P = window.Potok;
  const { el, t } = P;
  const app = P.clear(P.app());
  const enc = encodeURIComponent;

  const section = (id, titleKey, ...body) => el('section', { class: 'panel', id }, el('h2', {}, t(titleKey)), ...body);
  const unavailable = (box) => { box.append(el('p', { class: 'hint unavailable' }, t('dash.unavailable'))); };
  const fail = (box, e) => P.notice(box, P.errorText(e), 'error');

  (async () => {
    const me = await P.me();
    if (!me) { location.assign('/login?next=/dashboard'); return; }
    if (me.role !== 'streamer' && me.role !== 'admin') { app.append(el('p', { class: 'notice' }, t('dash.needstreamer'))); return; }
    const name = me.username;
    app.append(el('h1', {}, t('title.dashboard')),
      el('p', {}, t('dash.watch') + ': ', el('a', { href: '/' + enc(name), id: 'channel-link' }, location.origin + '/' + name)));
    const grid = el('div', { class: 'dash-grid' });
    app.append(grid);

    // --- ingest and keys -----------------------------------------------------------
    const ingestBox = el('dl', { id: 'ingest' });
    const keyList = el('ul', { id: 'keys' });
    const newKey = el('p', { id: 'new-key', class: 'secret', hidden: true });
    const createKey = el('button', { type: 'button', id: 'create-key' }, t('dash.key.new'));
    grid.append(section('ingest-panel', 'dash.ingest', ingestBox, el('h3', {}, t('dash.keys')), keyList, createKey, newKey));
    let streamId = null;
    const showKey = (k) => {
      newKey.hidden = false;
      P.clear(newKey).append(t('dash.key.shown'), el('code', { id: 'new-key-value' }, k.key));
    };
    const loadIngest = async () => {
      try {
        const i = await P.api('GET', '/api/v1/ingest');
        streamId = i.stream_id;
        P.clear(ingestBox);
        for (const [key, v] of [['dash.rtmp', i.rtmp_url], ['dash.rtmps', i.rtmps_url], ['dash.srt', i.srt_url]]) {
          if (!v) continue;
          ingestBox.append(el('dt', {}, t(key)), el('dd', {}, el('code', { class: 'ingest-url', 'data-kind': key.slice(5) }, v)));
        }
      } catch (e) { fail(ingestBox, e); }
    };
    const loadKeys = async () => {
      let keys = [];
      try { keys = await P.api('GET', '/api/v1/stream-keys'); } catch (e) { fail(keyList, e); return; }
      P.clear(keyList);
      for (const k of keys) {
        const rotate = el('button', { type: 'button', class: 'rotate' }, t('dash.key.rotate'));
        rotate.addEventListener('click', async () => { try { showKey(await P.api('POST', '/api/v1/stream-keys/' + enc(k.id) + '/rotate')); loadKeys(); } catch (e) { fail(keyList, e); } });
        const revoke = el('button', { type: 'button', class: 'revoke secondary' }, t('dash.key.revoke'));
        revoke.addEventListener('click', async () => { try { await P.api('DELETE', '/api/v1/stream-keys/' + enc(k.id)); loadKeys(); } catch (e) { fail(keyList, e); } });
        keyList.append(el('li', { 'data-id': k.id }, el('code', {}, k.prefix + '…'), ' ' + P.time(k.created_at) + ' ', rotate, ' ', revoke));
      }
    };
    createKey.addEventListener('click', async () => { try { showKey(await P.api('POST', '/api/v1/stream-keys', {})); loadKeys(); } catch (e) { fail(keyList, e); } });
    await loadIngest();
    loadKeys();

    // --- health and the viewers chart ---------------------------------------------
    const health = el('dl', { id: 'health' });
    const chart = el('canvas', { id: 'viewers-chart', width: '480', height: '120' });
    grid.append(section('health-panel', 'dash.health', health, el('h3', {}, t('dash.chart')), chart));
    const samples = [];
    const draw = () => {
      const g = chart.getContext('2d');
      const w = chart.width, h = chart.height;
      g.clearRect(0, 0, w, h);
      const max = Math.max(1, ...samples);
      g.strokeStyle = '#7c5cff';
      g.lineWidth = 2;
      g.beginPath();
      samples.forEach((v, i) => { const x = (i / Math.max(1, samples.length - 1)) * (w - 4) + 2; const y = h - 4 - (v / max) * (h - 20); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
      g.stroke();
      g.fillStyle = '#888';
      g.fillText(String(max), 4, 12);
    };
    const loadHealth = async () => {
      if (!streamId) return;
      try {
        const s = await P.api('GET', '/api/v1/streams/' + enc(streamId));
        P.clear(health).append(
          el('dt', {}, t('dash.status')), el('dd', { id: 'stream-status' }, s.status),
          el('dt', {}, t('dash.uptime')), el('dd', {}, P.duration(s.duration_secs || 0)),
          el('dt', {}, t('dash.viewers')), el('dd', { id: 'stream-viewers' }, String(s.current_viewers)),
          el('dt', {}, t('dash.peak')), el('dd', {}, String(s.peak_viewers)));
        // What the origin measures of the ingest and the ladder (live only).
        if (s.status === 'live' || s.status === 'paused') {
          let h = null;
          try { h = await P.api('GET', '/api/v1/streams/' + enc(streamId) + '/health'); } catch (_) { h = null; }
          if (h) {
            const num = (v, unit) => (v === null || v === undefined ? '—' : String(v) + (unit ? ' ' + unit : ''));
            const rungs = (h.rungs || []).map((r) => r.name + (r.active ? ' · ' + num(r.fps, t('dash.h.fps')) : ' · ' + t('dash.h.shed')));
            health.append(
              el('dt', {}, t('dash.h.bitrate')), el('dd', { id: 'health-bitrate', 'data-value': String(h.bitrate_kbps) }, num(h.bitrate_kbps, t('dash.h.kbps'))),
              el('dt', {}, t('dash.h.fps')), el('dd', { id: 'health-fps', 'data-value': String(h.fps) }, num(h.fps)),
              el('dt', {}, t('dash.h.keyframes')), el('dd', { id: 'health-keyframes' }, num(h.keyframe_interval_secs, t('dash.h.secs'))),
              el('dt', {}, t('dash.h.video')), el('dd', { id: 'health-video' }, [h.video_codecs, h.resolution && h.resolution.join('×')].filter(Boolean).join(' · ') || '—'),
              el('dt', {}, t('dash.h.dropped')), el('dd', { id: 'health-dropped' }, String(h.dropped_frames)),
              el('dt', {}, t('dash.h.rungs')), el('dd', { id: 'health-rungs', 'data-count': String((h.rungs || []).length) }, rungs.join(', ') || t('dash.h.norungs')),
              el('dt', {}, t('dash.h.shedding')), el('dd', { id: 'health-shedding', class: h.shedding ? 'warn' : '' }, t(h.shedding ? 'dash.h.yes' : 'dash.h.no')));
          }
        }
        samples.push(s.current_viewers || 0);
        if (samples.length > 360) samples.shift();
        draw();
        if (s.status === 'ended') { await loadIngest(); }
      } catch (e) { fail(health, e); }
    };
    loadHealth();
    setInterval(loadHealth, 5000);

    // --- chat and held messages ---------------------------------------------------
    const chatBox = el('div', { id: 'dash-chat', class: 'chat-panel' });
    const held = el('ul', { id: 'held' });
    grid.append(section('chat-panel', 'dash.chat', chatBox, el('h3', {}, t('dash.held')), held));
    P.Chat(chatBox, { room: name, me: name, moderator: true });
    const loadHeld = async () => {
      let list = [];
      try { list = await P.api('GET', '/api/v1/chat/' + enc(name) + '/held'); } catch (e) { fail(held, e); return; }
      P.clear(held);
      if (!list.length) held.append(el('li', { class: 'hint' }, t('dash.held.none')));
      for (const m of list) {
        const decide = (allow) => async () => { try { await P.api('POST', '/api/v1/chat/' + enc(name) + '/held/' + enc(m.id), { allow }); loadHeld(); } catch (e) { fail(held, e); } };
        held.append(el('li', { 'data-id': m.id }, el('b', {}, m.username), ': ', m.text, ' ', el('small', {}, '(' + m.reason + ')'), ' ',
          el('button', { type: 'button', onclick: decide(true) }, t('dash.held.allow')), ' ',
          el('button', { type: 'button', class: 'secondary', onclick: decide(false) }, t('dash.held.deny'))));
      }
    };
    loadHeld();
    setInterval(loadHeld, 5000);

    // --- donations and balance ----------------------------------------------------
    const feed = el('ol', { id: 'donations' });
    const balance = el('p', { id: 'balance' });
    const donationsPanel = section('donations-panel', 'dash.donations', balance, feed);
    grid.append(donationsPanel);
    const loadDonations = async () => {
      let list;
      try { list = await P.maybe('/api/v1/channels/' + enc(name) + '/donations'); } catch (e) { fail(feed, e); return; }
      if (list === null) { P.clear(feed); unavailable(feed); return false; }
      const items = Array.isArray(list) ? list : (list.items || []);
      P.clear(feed);
      for (const d of items.slice(0, 100)) {
        feed.append(el('li', { class: 'donation status-' + d.status, 'data-id': d.id },
          el('b', {}, P.anonymous(d) ? t('overlay.anonymous') : (d.donor_name || t('overlay.anonymous'))), ' ',
          el('span', { class: 'amount' }, P.money(d.amount, d.currency)), ' · ', t('donate.status.' + d.status),
          d.message ? el('p', { class: 'message' }, d.message) : null));
      }
      try {
        const b = await P.maybe('/api/v1/balance');
        if (b) balance.textContent = t('dash.balance') + ': ' + P.money(b.available !== undefined ? b.available : (b.balance || 0), b.currency || 'RUB');
      } catch (_) { /* shown next time */ }
      return true;
    };
    if (await loadDonations()) setInterval(loadDonations, 10000);

    // --- goals --------------------------------------------------------------------
    const goals = el('ul', { id: 'goals' });
    const gTitle = el('input', { id: 'goal-title', required: true, maxlength: '100' });
    const gDesc = el('input', { id: 'goal-description', maxlength: '500' });
    const gTarget = el('input', { id: 'goal-target', required: true, inputmode: 'decimal' });
    const gForm = el('form', { id: 'goal-form', class: 'inline-form' },
      el('label', {}, t('dash.goal.title'), ' ', gTitle), el('label', {}, t('dash.goal.description'), ' ', gDesc),
      el('label', {}, t('dash.goal.target'), ' ', gTarget, ' ₽'), el('button', { type: 'submit' }, t('dash.goal.create')));
    const goalsPanel = section('goals-panel', 'dash.goals', goals, gForm);
    grid.append(goalsPanel);
    const loadGoals = async () => {
      let list;
      try { list = await P.maybe('/api/v1/channels/' + enc(name) + '/goals'); } catch (e) { fail(goals, e); return; }
      P.clear(goals);
      if (list === null) { unavailable(goals); gForm.hidden = true; return; }
      for (const g of (Array.isArray(list) ? list : list.items || [])) goals.append(el('li', { 'data-id': g.id }, P.goalBar(g)));
    };
    gForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const target = P.toMinor(gTarget.value);
      if (isNaN(target) || target <= 0) return;
      try { await P.api('POST', '/api/v1/channels/' + enc(name) + '/goals', { title: gTitle.value, description: gDesc.value, target_amount: target, currency: 'RUB' }); gForm.reset(); loadGoals(); } catch (e) { fail(goals, e); }
    });
    loadGoals();

    // --- alert settings with a preview -------------------------------------------
    const variantsBox = el('div', { id: 'alert-variants' });
    const ttsOn = el('input', { type: 'checkbox', id: 'tts-enabled' });
    const ttsMin = el('input', { id: 'tts-min', inputmode: 'decimal', value: '0' });
    const saved = el('span', { class: 'hint', id: 'alerts-saved' });
    const preview = el('div', { id: 'alert-preview', class: 'alert-stage' });
    const alertsPanel = section('alerts-panel', 'dash.alerts', variantsBox,
      el('button', { type: 'button', id: 'add-variant', class: 'secondary' }, t('dash.alert.add')),
      el('p', {}, el('label', { class: 'check' }, ttsOn, ' ', t('dash.alert.tts')), ' ', el('label', {}, t('dash.alert.tts.min'), ' ', ttsMin, ' ₽')),
      el('p', {}, el('button', { type: 'button', id: 'save-alerts' }, t('dash.alert.save')), ' ', el('button', { type: 'button', id: 'preview-alert', class: 'secondary' }, t('dash.alert.preview')), ' ', saved),
      preview);
    grid.append(alertsPanel);
    const variantRow = (v) => {
      const row = el('fieldset', { class: 'variant' },
        el('label', {}, t('dash.alert.min'), ' ', el('input', { class: 'v-min', inputmode: 'decimal', value: String((v.min_amount || 0) / 100) }), ' ₽'),
        el('label', {}, t('dash.alert.animation'), ' ', (() => { const s = el('select', { class: 'v-anim' }, ...['fade', 'slide', 'bounce', 'zoom'].map((a) => el('option', { value: a }, a))); s.value = v.animation || 'fade'; return s; })()),
        el('label', {}, t('dash.alert.sound'), ' ', el('input', { class: 'v-sound', value: v.sound || '', maxlength: '500' })),
        el('label', {}, t('dash.alert.duration'), ' ', el('input', { class: 'v-duration', type: 'number', min: '1000', max: '60000', value: String(v.duration_ms || 6000) })),
        el('label', {}, t('dash.alert.template'), ' ', el('input', { class: 'v-template', value: v.text_template || '{donor} — {amount}', maxlength: '200' })));
      row.append(el('button', { type: 'button', class: 'secondary', onclick: () => row.remove() }, t('dash.alert.remove')));
      return row;
    };
    const readSettings = () => ({
      variants: [...variantsBox.querySelectorAll('.variant')].map((r) => ({
        min_amount: P.toMinor(r.querySelector('.v-min').value) || 0,
        animation: r.querySelector('.v-anim').value,
        sound: r.querySelector('.v-sound').value,
        duration_ms: Number(r.querySelector('.v-duration').value) || 6000,
        text_template: r.querySelector('.v-template').value,
      })),
      tts: { enabled: ttsOn.checked, min_amount: P.toMinor(ttsMin.value) || 0 },
    });
    const queue = P.AlertQueue(preview, readSettings());
    alertsPanel.querySelector('#add-variant').addEventListener('click', () => variantsBox.append(variantRow({})));
    alertsPanel.querySelector('#preview-alert').addEventListener('click', () => {
      queue.setSettings(readSettings());
      queue.push({ id: 'preview', donor_name: name, amount: 50000, currency: 'RUB', message: t('donate.thanks', { status: t('donate.status.completed') }), anonymous: false });
    });
    try {
      const s = await P.maybe('/api/v1/channels/' + enc(name) + '/donation-alerts');
      if (s === null) {
        variantsBox.append(variantRow({}));
        alertsPanel.querySelector('#save-alerts').hidden = true;
        saved.textContent = t('dash.unavailable');
      } else {
        for (const v of s.variants || []) variantsBox.append(variantRow(v));
        if (!(s.variants || []).length) variantsBox.append(variantRow({}));
        ttsOn.checked = !!(s.tts && s.tts.enabled);
        ttsMin.value = String(((s.tts && s.tts.min_amount) || 0) / 100);
      }
    } catch (e) { fail(alertsPanel, e); }
    alertsPanel.querySelector('#save-alerts').addEventListener('click', async () => {
      saved.textContent = '';
      try { await P.api('PUT', '/api/v1/channels/' + enc(name) + '/donation-alerts', readSettings()); saved.textContent = t('dash.alert.saved'); } catch (e) { saved.textContent = P.errorText(e); }
    });

    // --- request queue ------------------------------------------------------------
    const requests = el('ol', { id: 'requests' });
    grid.append(section('requests-panel', 'dash.requests', requests));
    const loadRequests = async () => {
      let list;
      try { list = await P.maybe('/api/v1/channels/' + enc(name) + '/requests'); } catch (e) { fail(requests, e); return false; }
      P.clear(requests);
      if (list === null) { unavailable(requests); return false; }
      for (const r of (Array.isArray(list) ? list : list.items || [])) {
        const act = (action) => async () => { try { await P.api('POST', '/api/v1/channels/' + enc(name) + '/requests/' + enc(r.id), { action }); loadRequests(); } catch (e) { fail(requests, e); } };
        requests.append(el('li', { 'data-id': r.id }, (r.title || r.text || r.message || r.id) + ' ', r.amount ? P.money(r.amount, r.currency) + ' ' : '',
          el('button', { type: 'button', onclick: act('approve') }, t('dash.request.approve')), ' ',
          el('button', { type: 'button', class: 'secondary', onclick: act('skip') }, t('dash.request.skip')), ' ',
          el('button', { type: 'button', class: 'secondary', onclick: act('refund') }, t('dash.request.refund'))));
      }
      return true;
    };
    if (await loadRequests()) setInterval(loadRequests, 10000);

    // --- overlay links ------------------------------------------------------------
    const overlays = el('ul', { id: 'overlay-tokens' });
    const newOverlay = el('button', { type: 'button', id: 'create-overlay' }, t('dash.overlay.new'));
    grid.append(section('overlays-panel', 'dash.overlays', el('p', { class: 'hint' }, t('dash.overlay.hint')), overlays, newOverlay));
    const links = (token) => el('ul', { class: 'overlay-links' }, ...['alerts', 'goal', 'chat', 'competition'].map((k) => el('li', {}, el('code', { class: 'overlay-url', 'data-kind': k }, location.origin + '/overlay/' + token + '/' + k))));
    const loadOverlays = async () => {
      let list;
      try { list = await P.maybe('/api/v1/overlay-tokens'); } catch (e) { fail(overlays, e); return; }
      P.clear(overlays);
      if (list === null) { unavailable(overlays); newOverlay.hidden = true; return; }
      for (const o of (Array.isArray(list) ? list : list.items || [])) {
        const revoke = el('button', { type: 'button', class: 'secondary' }, t('dash.overlay.revoke'));
        revoke.addEventListener('click', async () => { try { await P.api('DELETE', '/api/v1/overlay-tokens/' + enc(o.id)); loadOverlays(); } catch (e) { fail(overlays, e); } });
        overlays.append(el('li', { 'data-id': o.id }, P.time(o.created_at) + ' ', revoke, o.token ? links(o.token) : null));
      }
    };
    newOverlay.addEventListener('click', async () => {
      try {
        const o = await P.api('POST', '/api/v1/overlay-tokens', {});
        await loadOverlays();
        const li = overlays.querySelector('li[data-id="' + CSS.escape(o.id) + '"]');
        if (li && !li.querySelector('.overlay-links')) li.append(links(o.token));
      } catch (e) { fail(overlays, e); }
    });
    loadOverlays();

    // --- recordings: the channel's settings, start/stop now, the list -------------
    const recState = el('p', { id: 'rec-state' });
    const recToggle = el('button', { type: 'button', id: 'rec-toggle' });
    const recordAll = el('input', { type: 'checkbox', id: 'rec-record' });
    const retention = el('input', { type: 'number', id: 'rec-retention', min: '0', max: '3650', step: '1' });
    const recForm = el('form', { id: 'rec-settings' },
      el('label', {}, recordAll, ' ', t('dash.rec.record')),
      el('label', {}, t('dash.rec.retention'), ' ', retention),
      el('button', { type: 'submit' }, t('dash.rec.save')));
    const recList = el('ul', { id: 'recordings' });
    grid.append(section('rec-panel', 'dash.rec', recState, recToggle, recForm, recList));
    let settings = null;
    let recording = false;
    const loadSettings = async () => {
      try { settings = await P.maybe('/api/v1/channels/' + enc(name) + '/recording-settings'); } catch (e) { fail(recForm, e); return; }
      if (settings === null) { unavailable(recForm); recForm.hidden = true; return; }
      recordAll.checked = !!settings.record;
      retention.value = String(settings.retention_days);
    };
    recForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!settings) return;
      const days = Number(retention.value);
      try {
        settings = await P.api('PUT', '/api/v1/channels/' + enc(name) + '/recording-settings',
          { ...settings, record: recordAll.checked, retention_days: Number.isInteger(days) ? days : 0 });
        P.notice(recForm, t('dash.rec.saved'), 'ok');
      } catch (e) { fail(recForm, e); }
    });
    const loadState = async () => {
      if (!streamId) { recToggle.hidden = true; return; }
      let s;
      try { s = await P.api('GET', '/api/v1/streams/' + enc(streamId)); } catch (_) { return; }
      const onAir = s.status === 'live' || s.status === 'paused';
      recording = !!s.is_recording;
      recState.textContent = onAir ? t(recording ? 'dash.rec.on' : 'dash.rec.off') : '';
      recState.dataset.recording = String(recording);
      recToggle.hidden = !onAir;
      recToggle.textContent = t(recording ? 'dash.rec.stop' : 'dash.rec.start');
    };
    recToggle.addEventListener('click', async () => {
      try {
        await P.api(recording ? 'DELETE' : 'POST', '/api/v1/streams/' + enc(streamId) + '/recording', recording ? undefined : {});
        await loadState();
        setTimeout(loadRecordings, 3000);
      } catch (e) { fail(recList, e); }
    });
    const loadRecordings = async () => {
      let list;
      try { list = await P.maybe('/api/v1/recordings?' + new URLSearchParams({ channel: name, limit: '20' })); } catch (e) { fail(recList, e); return; }
      P.clear(recList);
      if (list === null) return;
      if (!list.length) recList.append(el('li', { class: 'hint' }, t('dash.rec.none')));
      for (const r of list) {
        const del = el('button', { type: 'button', class: 'secondary rec-delete' }, t('dash.rec.delete'));
        del.hidden = r.ended_at == null;
        del.addEventListener('click', async () => { try { await P.api('DELETE', '/api/v1/recordings/' + enc(r.id)); loadRecordings(); } catch (e) { fail(recList, e); } });
        const link = /^\/vod\/[A-Za-z0-9_-]+\/master\.m3u8$/.test(r.playback_path || '')
          ? el('a', { href: P.boot.edge + r.playback_path, class: 'rec-link' }, r.kind + ' · ' + P.time(r.started_at)) : r.id;
        recList.append(el('li', { 'data-id': r.id }, link, ' ' + P.duration(Math.round(r.duration_secs || 0)) + ' ', del));
      }
    };
    loadSettings();
    loadState();
    loadRecordings();
    setInterval(loadState, 10000);
    setInterval(loadRecordings, 30000);
  })();
})();
