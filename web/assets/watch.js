// The watch page /{channel}: the player (hls.js in low-latency mode, starting at the live
// edge and catching up with a faster playback rate; a quality menu with auto), stream
// info and viewers, follow, the donate dialog and the chat panel.
'use strict';
(function () {
  const P = window.Potok;
  const { el, t } = P;
  const channel = P.boot.channel;
  const edge = P.boot.edge;
  const src = edge + '/live/' + encodeURIComponent(channel) + '/master.m3u8';
  const app = P.clear(P.app());

  const video = el('video', { id: 'player', playsinline: true, muted: true, autoplay: true, controls: true });
  const offline = el('div', { class: 'offline', id: 'offline', hidden: true },
    el('p', { class: 'offline-title' }, t('watch.offline', { channel })),
    el('p', {}, t('watch.offline.wait')));
  // The last finished broadcast, when the channel has one: played from the store through
  // the edge while the channel is offline.
  const lastBox = el('div', { class: 'offline-last', id: 'offline-last', hidden: true });
  offline.append(lastBox);
  let vod = null;
  const stopVod = () => { if (vod) { vod.destroy(); vod = null; } video.removeAttribute('data-vod'); };
  const playVod = (r) => {
    const url = edge + r.playback_path;
    offline.hidden = true;
    video.dataset.vod = r.id;
    if (!window.Hls || !Hls.isSupported()) { video.src = url; video.play().catch(() => {}); return; }
    stopVod();
    video.dataset.vod = r.id;
    vod = new Hls({ enableWorker: true });
    vod.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); });
    vod.loadSource(url);
    vod.attachMedia(video);
  };
  const showLast = async () => {
    let list;
    try { list = await P.api('GET', '/api/v1/recordings?' + new URLSearchParams({ channel, kind: 'recording', finished: 'true', limit: '1' })); } catch (_) { return; }
    const r = list && list[0];
    if (!r || !/^\/vod\/[A-Za-z0-9_-]+\/master\.m3u8$/.test(r.playback_path || '')) { lastBox.hidden = true; return; }
    const when = P.time(r.started_at);
    const minutes = Math.max(1, Math.round((r.duration_secs || 0) / 60));
    const button = el('button', { type: 'button', id: 'play-last' }, t('watch.last.play'));
    button.addEventListener('click', () => playVod(r));
    P.clear(lastBox).append(el('p', {}, t('watch.last', { when, minutes })), button);
    lastBox.hidden = false;
  };
  const quality = el('select', { id: 'quality', 'aria-label': t('watch.quality') }, el('option', { value: '-1' }, t('watch.quality.auto')));
  const toLive = el('button', { type: 'button', id: 'to-live', hidden: true }, t('watch.tolive'));
  const badge = el('span', { class: 'live-badge', id: 'live-badge', hidden: true }, t('watch.live'));
  const viewers = el('span', { id: 'viewers', class: 'viewers' });
  const followers = el('span', { id: 'followers', class: 'followers' });
  const follow = el('button', { type: 'button', id: 'follow', hidden: true }, t('watch.follow'));
  const donateBtn = el('button', { type: 'button', id: 'donate', hidden: true }, t('watch.donate'));
  const title = el('h1', { id: 'stream-title' }, channel);
  const meta = el('p', { id: 'stream-meta', class: 'meta' });
  const chatBox = el('aside', { id: 'chat', class: 'chat-panel' }, el('h2', {}, t('chat.title')));
  const info = el('section', { class: 'info' },
    el('div', { class: 'info-row' }, badge, title),
    meta,
    el('div', { class: 'info-row' }, viewers, followers, follow, donateBtn, el('label', { class: 'quality' }, t('watch.quality') + ' ', quality), toLive));
  app.append(el('div', { class: 'watch' }, el('section', { class: 'stage' }, el('div', { class: 'video-box' }, video, offline), info), chatBox));

  // --- player -----------------------------------------------------------------------
  let hls = null;
  let broadcastEnded = false;
  window.potokPlayer = { video, get hls() { return hls; } };

  const levelName = (l) => (l.height ? l.height + 'p' : Math.round((l.bitrate || 0) / 1000) + ' kb/s');
  const fillQuality = () => {
    P.clear(quality).append(el('option', { value: '-1' }, t('watch.quality.auto')));
    hls.levels.map((l, i) => ({ l, i })).sort((a, b) => (b.l.height || 0) - (a.l.height || 0) || b.l.bitrate - a.l.bitrate)
      .forEach(({ l, i }) => quality.append(el('option', { value: String(i) }, levelName(l))));
    quality.value = String(hls.autoLevelEnabled ? -1 : hls.currentLevel);
  };
  quality.addEventListener('change', () => {
    if (!hls) return;
    const i = Number(quality.value);
    // An explicit pick switches now; auto hands the choice back to ABR.
    hls.currentLevel = i;
  });

  const start = () => {
    stopVod();
    broadcastEnded = false;
    offline.hidden = true;
    badge.hidden = false;
    if (!window.Hls || !Hls.isSupported()) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) { video.src = src; video.play().catch(() => {}); }
      return;
    }
    hls = new Hls({
      lowLatencyMode: true,
      // Keep close to the live edge: catch up at up to 1.5x, never wait for a whole
      // segment to start.
      maxLiveSyncPlaybackRate: 1.5,
      liveSyncOnStallIncrease: 0.2,
      backBufferLength: 30,
      startFragPrefetch: true,
      enableWorker: true,
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => { fillQuality(); video.play().catch(() => {}); });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
      const l = hls.levels[d.level];
      video.dataset.level = String(d.level);
      video.dataset.height = String((l && l.height) || 0);
      if (!hls.autoLevelEnabled) quality.value = String(d.level);
    });
    // The broadcast ended (the playlist got EXT-X-ENDLIST): offline once what is buffered
    // has played (checked below; a player stalled at the end never fires `ended`).
    hls.on(Hls.Events.LEVEL_UPDATED, (_, d) => { if (d.details && d.details.live === false) broadcastEnded = true; });
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (!d.fatal) return;
      if (d.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
      // The stream ended or the edge went away: back to waiting.
      hls.destroy();
      hls = null;
      goOffline();
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  };

  // Join at the live edge after a stall or a pause: hls.js catches up with playback rate
  // while close; far behind, jump.
  setInterval(() => {
    if (hls && broadcastEnded) {
      const b = video.buffered;
      const left = b.length ? b.end(b.length - 1) - video.currentTime : 0;
      if (video.ended || left < 0.5) { hls.destroy(); hls = null; goOffline(); return; }
    }
    if (!hls || video.paused) { toLive.hidden = !hls; return; }
    const lat = hls.latency, target = hls.targetLatency || 3;
    toLive.hidden = !(lat > target * 2 + 2);
    if (lat > target + 6 && hls.liveSyncPosition) video.currentTime = hls.liveSyncPosition;
  }, 1000);
  toLive.addEventListener('click', () => {
    if (hls && hls.liveSyncPosition) video.currentTime = hls.liveSyncPosition;
    video.play().catch(() => {});
  });

  // On air: the multivariant playlist is there and its first media playlist has not ended
  // (an origin keeps an ended broadcast's playlists, with ENDLIST, for a while).
  const onAir = async () => {
    const r = await fetch(src, { cache: 'no-store' });
    if (!r.ok) return false;
    const uri = (await r.text()).split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
    if (!uri) return false;
    const m = await fetch(new URL(uri, new URL(src, location.href)), { cache: 'no-store' });
    return m.ok && !(await m.text()).includes('#EXT-X-ENDLIST');
  };
  // The broadcast ended while watching: once the last of it has played, offline.
  video.addEventListener('ended', () => {
    if (!hls || vod) return;
    hls.destroy();
    hls = null;
    goOffline();
  });

  let probing = false;
  const goOffline = () => {
    badge.hidden = true;
    offline.hidden = false;
    showLast();
    if (probing) return;
    probing = true;
    const probe = async () => {
      try {
        if (await onAir()) { probing = false; start(); return; }
      } catch (_) { /* edge not reachable yet */ }
      setTimeout(probe, 3000);
    };
    probe();
  };
  // `?vod={id}` (the directory's recent broadcasts): that recording of this channel plays;
  // "back to the channel" returns to live (or the offline state).
  const wanted = new URLSearchParams(location.search).get('vod');
  const toChannel = el('button', { type: 'button', id: 'to-channel', hidden: true }, t('watch.tochannel'));
  toChannel.addEventListener('click', () => {
    toChannel.hidden = true;
    stopVod();
    video.removeAttribute('src');
    history.replaceState(null, '', '/' + encodeURIComponent(channel));
    goOffline();
  });
  info.querySelector('.info-row:last-child').append(toChannel);
  (async () => {
    if (wanted && /^[A-Za-z0-9_-]{1,128}$/.test(wanted)) {
      try {
        const r = await P.api('GET', '/api/v1/recordings/' + encodeURIComponent(wanted));
        if (r.channel === channel && r.ended_at && /^\/vod\/[A-Za-z0-9_-]+\/master\.m3u8$/.test(r.playback_path || '')) {
          playVod(r);
          toChannel.hidden = false;
          return;
        }
      } catch (_) { /* gone or never was: the channel instead */ }
    }
    goOffline();
  })();

  // --- stream info, viewers, follow -------------------------------------------------
  const refreshInfo = async () => {
    try {
      const page = await P.api('GET', '/api/v1/streams/active?limit=100');
      const s = (page.items || []).find((x) => x.name === channel);
      if (s) {
        title.textContent = s.title || channel;
        meta.textContent = [channel, s.category, s.language].filter(Boolean).join(' · ');
        viewers.textContent = t('watch.viewers', { n: s.current_viewers });
        document.title = t('title.watch', { channel: s.title || channel });
      } else {
        meta.textContent = channel;
        viewers.textContent = '';
      }
    } catch (_) { /* shown on the next refresh */ }
  };
  refreshInfo();
  setInterval(refreshInfo, 15000);

  (async () => {
    let ch = null;
    try { ch = await P.api('GET', '/api/v1/channels/' + encodeURIComponent(channel)); } catch (e) {
      if (e.status === 404) { P.notice(app, t('watch.nochannel', { channel }), 'error'); return; }
    }
    if (ch) followers.textContent = t('watch.followers', { n: ch.followers });
    const me = await P.me();
    // The room's own moderators too (the channel answers the caller's standing).
    const moderator = !!me && (me.username === channel || me.role === 'moderator' || me.role === 'admin'
      || (!!ch && (ch.role === 'owner' || ch.role === 'moderator')));
    P.Chat(chatBox, { room: channel, me: me && me.username, moderator });
    if (me && me.username !== channel) {
      follow.hidden = false;
      let following = !!(ch && ch.following);
      follow.textContent = t(following ? 'watch.unfollow' : 'watch.follow');
      follow.dataset.following = String(following);
      follow.addEventListener('click', async () => {
        try {
          await P.api(following ? 'DELETE' : 'PUT', '/api/v1/channels/' + encodeURIComponent(channel) + '/follow');
          following = !following;
        } catch (e) {
          if (e.status === 409) following = !following; else { P.notice(app, P.errorText(e), 'error'); return; }
        }
        follow.textContent = t(following ? 'watch.unfollow' : 'watch.follow');
        follow.dataset.following = String(following);
        const c = await P.api('GET', '/api/v1/channels/' + encodeURIComponent(channel)).catch(() => null);
        if (c) followers.textContent = t('watch.followers', { n: c.followers });
      });
    }
    donations(me);
  })();

  // --- donations --------------------------------------------------------------------
  const donations = async (me) => {
    let opts = null;
    try { opts = await P.maybe('/api/v1/channels/' + encodeURIComponent(channel) + '/donation-options'); } catch (_) { opts = null; }
    returned();
    if (!opts) return;
    donateBtn.hidden = false;
    donateBtn.addEventListener('click', () => openDialog(opts, me));
  };

  const returned = async () => {
    const q = new URLSearchParams(location.search);
    if (!q.has('donated')) return;
    let id = null;
    try { id = sessionStorage.getItem('potok_donation'); } catch (_) { /* private mode */ }
    if (!id) return;
    try {
      const d = await P.api('GET', '/api/v1/donations/' + encodeURIComponent(id));
      P.notice(app, t('donate.thanks', { status: t('donate.status.' + d.status) }), d.status === 'failed' ? 'error' : 'info');
    } catch (_) { /* nothing to say */ }
  };

  const openDialog = (o, me) => {
    const old = document.getElementById('donate-dialog');
    if (old) old.remove();
    const cur = (o.currencies && o.currencies[0]) || { currency: 'RUB', min: 100, max: 10000000 };
    const err = el('p', { class: 'form-error', id: 'donate-error', role: 'alert' });
    const amount = el('input', { id: 'donate-amount', name: 'amount', inputmode: 'decimal', required: true, value: String(Math.max(cur.min, 10000) / 100) });
    const currency = el('select', { id: 'donate-currency', name: 'currency' }, ...(o.currencies || [cur]).map((c) => el('option', { value: c.currency }, c.currency)));
    const message = el('textarea', { id: 'donate-message', name: 'message', maxlength: String(o.max_message_chars || 300), rows: '3' });
    const name = el('input', { id: 'donate-name', name: 'donor_name', maxlength: '64', value: me ? me.username : '' });
    const anon = el('input', { type: 'checkbox', id: 'donate-anonymous', name: 'anonymous' });
    const method = el('select', { id: 'donate-method', name: 'method' }, ...(o.methods || ['bank_card']).map((m) => el('option', { value: m }, t('donate.method.' + m))));
    const kinds = el('div', { class: 'kinds' });
    let kind = { type: 'money' };
    const requestText = el('input', { id: 'donate-request', name: 'request', maxlength: '200' });
    const requestLink = el('input', { id: 'donate-request-link', name: 'request_link', maxlength: '500', type: 'url', placeholder: 'https://' });
    const requestBox = el('div', { class: 'request-fields', hidden: true },
      el('label', {}, t('donate.request'), ' ', requestText), el('label', {}, t('donate.request.link'), ' ', requestLink));
    const pickKind = (k, btn) => {
      kind = k;
      for (const b of kinds.children) b.classList.toggle('picked', b === btn);
      if (k.price) amount.value = String(k.price / 100);
      amount.readOnly = !!k.price;
      requestBox.hidden = !k.request;
      requestText.required = !!k.request;
      if (voteBox) voteBox.hidden = k.type !== 'money' || !!k.request;
    };
    // A running competition: the donation may vote for one of its options.
    const comp = o.competition && o.competition.ends_at > Date.now() ? o.competition : null;
    const vote = comp ? el('select', { id: 'donate-vote', name: 'vote' }, el('option', { value: '' }, t('donate.vote.none')),
      ...(comp.options || []).map((x) => el('option', { value: x.id }, x.label + ' · ' + P.money(x.total || 0, 'RUB')))) : null;
    const voteBox = comp ? el('label', { class: 'vote' }, t('donate.vote', { title: comp.title }), ' ', vote) : null;
    const money = el('button', { type: 'button', class: 'kind picked' }, t('donate.kind.money'));
    money.addEventListener('click', () => pickKind({ type: 'money' }, money));
    kinds.append(money);
    for (const g of o.gifts || []) {
      const b = el('button', { type: 'button', class: 'kind gift', 'data-id': g.id }, g.image_url && /^(https:|\/)/.test(g.image_url) ? el('img', { src: g.image_url, alt: '' }) : null, g.name + ' · ' + P.money(g.price, g.currency));
      b.addEventListener('click', () => pickKind({ type: 'virtual_gift', gift_id: g.id, price: g.price }, b));
      kinds.append(b);
    }
    // A song or game request: a paid donation with what is asked (the streamer's queue).
    for (const rk of ['song', 'game']) {
      if (!(o.request_price > 0)) break;
      const b = el('button', { type: 'button', class: 'kind request', 'data-request': rk }, t('donate.kind.' + rk) + ' · ' + P.money(o.request_price, 'RUB'));
      b.addEventListener('click', () => { pickKind({ type: 'money', request: rk, min: o.request_price }, b); if (P.toMinor(amount.value) < o.request_price) amount.value = String(o.request_price / 100); });
      kinds.append(b);
    }
    for (const it of (o.items || []).filter((i) => i.available)) {
      const b = el('button', { type: 'button', class: 'kind item', 'data-id': it.id }, it.name + ' · ' + P.money(it.price, it.currency));
      b.addEventListener('click', () => pickKind({ type: it.kind, item_id: it.id, price: it.price }, b));
      kinds.append(b);
    }
    const pay = el('button', { type: 'submit', id: 'donate-pay' }, t('donate.pay', { amount: P.money(P.toMinor(amount.value), currency.value) }));
    const update = () => { const m = P.toMinor(amount.value); pay.textContent = t('donate.pay', { amount: isNaN(m) ? '—' : P.money(m, currency.value) }); };
    amount.addEventListener('input', update);
    currency.addEventListener('change', update);
    const form = el('form', { class: 'donate-form' },
      el('h2', {}, t('donate.title', { channel })),
      o.goal ? el('p', { class: 'goal-line' }, t('donate.goal', { title: o.goal.title }) + ' — ' + t('dash.goal.progress', { current: P.money(P.goal(o.goal).current, o.goal.currency), target: P.money(P.goal(o.goal).target, o.goal.currency) })) : null,
      o.accepting === false ? el('p', { class: 'form-error' }, o.refusal || t('donate.refused')) : null,
      el('fieldset', {}, el('legend', {}, t('donate.kind')), kinds),
      requestBox,
      voteBox,
      el('label', {}, t('donate.amount'), ' ', amount, ' ', currency),
      el('p', { class: 'hint' }, t('donate.limits', { min: P.money(cur.min, cur.currency), max: P.money(cur.max, cur.currency) })),
      el('label', {}, t('donate.message'), message),
      el('label', {}, t('donate.name'), ' ', name),
      el('label', { class: 'check' }, anon, ' ', t('donate.anonymous')),
      el('label', {}, t('donate.method'), ' ', method),
      err,
      el('div', { class: 'buttons' }, pay, el('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, t('donate.cancel'))));
    const dialog = el('dialog', { id: 'donate-dialog' }, form);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const minor = P.toMinor(amount.value);
      const least = Math.max(cur.min, kind.min || 0);
      if (isNaN(minor) || minor < least || minor > cur.max) { err.textContent = t('donate.limits', { min: P.money(least, cur.currency), max: P.money(cur.max, cur.currency) }); return; }
      if (kind.request && !requestText.value.trim()) { err.textContent = t('donate.request.needed'); return; }
      if (kind.request && requestLink.value.trim() && !/^https:\/\/\S+$/.test(requestLink.value.trim())) { err.textContent = t('donate.request.badlink'); return; }
      const body = {
        amount: minor, currency: currency.value, anonymous: anon.checked, method: method.value, type: kind.type,
        return_url: '/' + encodeURIComponent(channel) + '?donated=1',
      };
      if (message.value.trim()) body.message = message.value;
      if (name.value.trim()) body.donor_name = name.value.trim();
      if (kind.gift_id) body.gift_id = kind.gift_id;
      if (kind.item_id) body.item_id = kind.item_id;
      if (vote && vote.value && kind.type === 'money' && !kind.request) { body.competition_id = comp.id; body.option_id = vote.value; }
      let path = '/api/v1/channels/' + encodeURIComponent(channel) + '/donations', payload = body;
      if (kind.request) {
        // The request endpoints take the payment apart from what is asked.
        const paid = { ...body };
        delete paid.type;
        const request = { text: requestText.value.trim() };
        if (requestLink.value.trim()) request.link = requestLink.value.trim();
        path = '/api/v1/channels/' + encodeURIComponent(channel) + '/' + kind.request + '-requests';
        payload = { request, pay: paid };
      }
      pay.disabled = true;
      try {
        const r = await P.api('POST', path, payload);
        try { sessionStorage.setItem('potok_donation', r.donation.id); } catch (_) { /* private mode */ }
        const url = r.confirmation && r.confirmation.url;
        // The provider's checkout (YooKassa) or the sandbox's page: a web URL, never a script.
        if (url && (/^https?:\/\//.test(url) || (url.startsWith('/') && !url.startsWith('//')))) location.assign(url);
        else err.textContent = P.t('error.generic', { message: 'no confirmation URL' });
      } catch (e) {
        err.textContent = P.errorText(e);
      } finally {
        pay.disabled = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
  };
})();
