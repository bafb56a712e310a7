// The directory /: live streams with title, category, language and viewers; filters by
// category and language; tournament broadcasts (tag `tournament:<name>`) grouped; recent
// broadcasts (finished recordings) below.
'use strict';
(function () {
  const P = window.Potok;
  const { el, t } = P;
  const app = P.clear(P.app());
  const q = new URLSearchParams(location.search);
  const category = el('input', { name: 'category', id: 'filter-category', value: q.get('category') || '', maxlength: '64' });
  const language = el('select', { name: 'language', id: 'filter-language' },
    el('option', { value: '' }, t('dir.filter.any')), el('option', { value: 'ru' }, 'Русский'), el('option', { value: 'en' }, 'English'));
  language.value = q.get('language') || '';
  app.append(el('h1', {}, t('title.directory')),
    el('form', { class: 'filters', method: 'get', action: '/' },
      el('label', {}, t('dir.filter.category'), ' ', category),
      el('label', {}, t('dir.filter.language'), ' ', language),
      el('button', { type: 'submit' }, t('dir.filter.apply'))));
  const list = el('div', { id: 'streams' });
  app.append(list);

  // The stream's latest thumbnail from the edge (a path the API gives); refreshed with the
  // list, hidden when the edge has none yet.
  const thumb = (s) => {
    if (!s.thumbnail_path || !/^\/thumbnails\/[A-Za-z0-9_-]+\.jpg$/.test(s.thumbnail_path)) return null;
    const img = el('img', { src: P.boot.edge + s.thumbnail_path + '?t=' + Math.floor(Date.now() / 30000), alt: '', class: 'thumb-img', loading: 'lazy' });
    img.addEventListener('error', () => { img.hidden = true; });
    return img;
  };
  const card = (s) => el('a', { class: 'card', href: '/' + encodeURIComponent(s.name), 'data-name': s.name },
    el('div', { class: 'thumb' }, thumb(s), el('span', { class: 'live-badge' }, t('watch.live'))),
    el('h3', { class: 'card-title' }, s.title || s.name),
    el('p', { class: 'card-meta' }, [s.name, s.category, s.language].filter(Boolean).join(' · ')),
    el('p', { class: 'card-viewers' }, t('dir.viewers', { n: s.current_viewers || 0 })));

  const load = async () => {
    const params = new URLSearchParams({ limit: '100' });
    if (category.value.trim()) params.set('category', category.value.trim());
    if (language.value) params.set('language', language.value);
    let page;
    try { page = await P.api('GET', '/api/v1/streams/active?' + params); } catch (e) { P.notice(app, P.errorText(e), 'error'); return; }
    P.clear(list);
    const items = (page.items || []).slice().sort((a, b) => (b.current_viewers || 0) - (a.current_viewers || 0));
    if (!items.length) { list.append(el('p', { class: 'empty' }, t('dir.empty'))); return; }
    const groups = new Map();
    const rest = [];
    for (const s of items) {
      const tag = (s.tags || []).find((x) => x.startsWith('tournament:'));
      if (tag) { const k = tag.slice(11); if (!groups.has(k)) groups.set(k, []); groups.get(k).push(s); } else rest.push(s);
    }
    for (const [name, streams] of groups) list.append(el('section', { class: 'group tournament' }, el('h2', {}, t('dir.tournament', { name })), el('div', { class: 'cards' }, streams.map(card))));
    if (rest.length) list.append(el('section', { class: 'group' }, groups.size ? el('h2', {}, t('dir.other')) : null, el('div', { class: 'cards' }, rest.map(card))));
  };
  load();
  setInterval(load, 30000);

  // Recent broadcasts: finished recordings, newest first, each playing on its channel's
  // page (`/{channel}?vod={id}`), with its poster when one was made.
  const recent = el('section', { id: 'recent', class: 'group', hidden: true }, el('h2', {}, t('dir.recent')));
  const recentCards = el('div', { class: 'cards' });
  recent.append(recentCards);
  app.append(recent);
  const recCard = (r) => {
    const poster = /^\/vod\/[A-Za-z0-9_-]+\/poster\.jpg$/.test(r.poster_path || '')
      ? el('img', { src: P.boot.edge + r.poster_path, alt: '', class: 'thumb-img', loading: 'lazy' }) : null;
    if (poster) poster.addEventListener('error', () => { poster.hidden = true; });
    const minutes = Math.max(1, Math.round((r.duration_secs || 0) / 60));
    return el('a', { class: 'card recording', href: '/' + encodeURIComponent(r.channel) + '?' + new URLSearchParams({ vod: r.id }), 'data-id': r.id },
      el('div', { class: 'thumb' }, poster, el('span', { class: 'duration-badge' }, t('dir.minutes', { n: minutes }))),
      el('h3', { class: 'card-title' }, r.channel),
      el('p', { class: 'card-meta' }, P.time(r.ended_at || r.started_at)));
  };
  const loadRecent = async () => {
    let list;
    try { list = await P.api('GET', '/api/v1/recordings?' + new URLSearchParams({ kind: 'recording', finished: 'true', limit: '12' })); } catch (_) { return; }
    P.clear(recentCards).append(...(list || []).filter((r) => /^\/vod\/[A-Za-z0-9_-]+\/master\.m3u8$/.test(r.playback_path || '')).map(recCard));
    recent.hidden = !recentCards.children.length;
  };
  loadRecent();
  setInterval(loadRecent, 60000);
})();
