// Drives Potok's pages in headless Chromium as a streamer, a viewer and an OBS overlay
// would, against a running `potok all` at BASE.
//
//   node web.mjs BASE OUT_DIR
//
// Prints JSON lines: {"event":"push","url":"rtmp://.../<key>"} once the streamer has made
// a stream key on the dashboard (the caller starts ffmpeg on it), {"event":"stop_push"} when
// the broadcast should end (the caller stops ffmpeg), then
// {"event":"check","name":...} as each check passes, and last one report:
// {"ok":bool,"checks":[..],"donations":"checked"|"unavailable","screenshot":path|null,
//  "consoleErrors":[..],"error":string|null}. Exit code 0 when the report was printed.
import { chromium } from 'playwright-core';
import { join } from 'node:path';

const [base, outDir] = process.argv.slice(2);
const say = (o) => console.log(JSON.stringify(o));
const checks = [];
const passed = (name, extra) => { checks.push(name); say({ event: 'check', name, ...(extra || {}) }); };
const consoleErrors = [];
const PASSWORD = 'a long password for tests';
const STREAMER = 'streamer1';
const VIEWER = 'viewer1';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});

// Console errors from our scripts and uncaught exceptions. Chromium also logs every HTTP
// error answer as "Failed to load resource"; those are expected here (the offline probe's
// 404 before the stream starts, APIs this server lacks) and are not script errors.
const watchConsole = (page, who) => {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    if (text.startsWith('Failed to load resource')) return;
    consoleErrors.push(who + ': ' + text);
  });
  page.on('pageerror', (e) => consoleErrors.push(who + ': uncaught ' + String(e)));
};

const newPage = async (who, opts) => {
  const ctx = await browser.newContext({ locale: 'ru-RU', ...(opts || {}) });
  const page = await ctx.newPage();
  watchConsole(page, who);
  return page;
};

const signup = async (page, name, streamer) => {
  await page.goto(base + '/signup');
  await page.fill('#username', name);
  await page.fill('#password', PASSWORD);
  if (streamer) await page.check('#streamer');
  await Promise.all([page.waitForURL(streamer ? /\/dashboard$/ : /\/account$/, { timeout: 20000 }), page.click('#submit')]);
};

const chatSend = async (page, text) => {
  await page.fill('.chat-input', text);
  await page.click('.chat-send');
  await page.waitForFunction(() => document.querySelector('.chat-input').value === '', null, { timeout: 10000 });
};

let report = { ok: false, checks, donations: 'unavailable', screenshot: null, consoleErrors, error: null };
try {
  // --- the streamer signs up and makes a key on the dashboard ------------------------
  const streamer = await newPage('streamer');
  await signup(streamer, STREAMER, true);
  await streamer.waitForSelector('.ingest-url[data-kind="rtmp"]', { timeout: 20000 });
  const rtmp = (await streamer.textContent('.ingest-url[data-kind="rtmp"]')).trim();
  await streamer.click('#create-key');
  await streamer.waitForSelector('#new-key-value', { timeout: 10000 });
  const key = (await streamer.textContent('#new-key-value')).trim();
  await streamer.waitForSelector('#keys li', { timeout: 10000 });
  passed('signup_and_stream_key');
  say({ event: 'push', url: rtmp + '/' + key });

  // --- a viewer signs up and watches -------------------------------------------------
  const viewer = await newPage('viewer');
  await signup(viewer, VIEWER, false);
  await viewer.goto(base + '/' + STREAMER);
  await viewer.waitForFunction(() => document.getElementById('player').currentTime > 0, null, { timeout: 90000, polling: 250 });
  const t0 = await viewer.evaluate(() => document.getElementById('player').currentTime);
  await viewer.waitForFunction((t) => document.getElementById('player').currentTime > t + 3, t0, { timeout: 20000, polling: 250 });
  const latency = await viewer.evaluate(() => window.potokPlayer.hls ? window.potokPlayer.hls.latency : null);
  passed('watch_page_plays', { latency });

  // Quality: the menu lists auto and every rendition; picking the lowest plays it.
  await viewer.waitForFunction(() => document.querySelectorAll('#quality option').length >= 3, null, { timeout: 20000 });
  const options = await viewer.$$eval('#quality option', (os) => os.map((o) => ({ value: o.value, label: o.textContent })));
  const lowest = options[options.length - 1];
  const height = await viewer.evaluate((v) => window.potokPlayer.hls.levels[Number(v)].height, lowest.value);
  await viewer.selectOption('#quality', lowest.value);
  await viewer.waitForFunction((h) => document.getElementById('player').dataset.height === String(h), height, { timeout: 20000, polling: 200 });
  const t1 = await viewer.evaluate(() => document.getElementById('player').currentTime);
  await viewer.waitForFunction((t) => document.getElementById('player').currentTime > t + 2, t1, { timeout: 20000, polling: 250 });
  passed('quality_switch', { options: options.map((o) => o.label), picked: lowest.label, height });

  // --- chat between two browsers -----------------------------------------------------
  await streamer.goto(base + '/' + STREAMER);
  await streamer.waitForSelector('.chat-input', { timeout: 20000 });
  await streamer.waitForFunction(() => document.querySelector('.chat-status').hidden, null, { timeout: 20000 });
  await viewer.waitForFunction(() => document.querySelector('.chat-status').hidden, null, { timeout: 20000 });
  const hello = 'привет из второго браузера ' + Date.now();
  await chatSend(viewer, hello);
  await streamer.waitForFunction((s) => [...document.querySelectorAll('.chat-line .text')].some((e) => e.textContent === s), hello, { timeout: 15000 });
  passed('chat_between_browsers');

  await chatSend(viewer, '@' + STREAMER + ' смотри');
  await streamer.waitForSelector('.chat-line.mentions-me .mention.me', { timeout: 15000 });
  passed('mention_highlighted');

  // An injected <img onerror> is shown as text and never runs.
  const xss = '<img src=x onerror="window.__xss=1;document.title=\'pwned\'"> <script>window.__xss=2</script>';
  await chatSend(viewer, xss);
  await streamer.waitForFunction((s) => [...document.querySelectorAll('.chat-line .text')].some((e) => e.textContent === s), xss, { timeout: 15000 });
  const injected = await streamer.evaluate(() => ({ xss: window.__xss === undefined ? null : window.__xss, imgs: document.querySelectorAll('.chat-lines img, .chat-lines script').length, title: document.title }));
  if (injected.xss !== null || injected.imgs !== 0 || injected.title === 'pwned') throw new Error('chat markup executed: ' + JSON.stringify(injected));
  passed('chat_escapes_markup');

  // A reaction from the streamer reaches the viewer.
  await streamer.evaluate((s) => {
    const line = [...document.querySelectorAll('.chat-line')].find((l) => l.querySelector('.text').textContent === s);
    line.querySelector('.react-add').click();
  }, hello);
  await viewer.waitForFunction(() => document.querySelector('.reactions .reaction') !== null, null, { timeout: 15000 });
  passed('reaction');

  // Follow: the button knows after a reload that the viewer follows.
  await viewer.waitForSelector('#follow:not([hidden])', { timeout: 10000 });
  if (await viewer.getAttribute('#follow', 'data-following') !== 'false') throw new Error('following before following');
  await viewer.click('#follow');
  await viewer.waitForSelector('#follow[data-following="true"]', { timeout: 10000 });
  await viewer.reload();
  await viewer.waitForSelector('#follow:not([hidden])[data-following="true"]', { timeout: 15000 });
  await viewer.waitForFunction(() => document.getElementById('player').currentTime > 0, null, { timeout: 30000 });
  passed('follow_remembered');

  // --- Russian and English -----------------------------------------------------------
  const lang = await viewer.evaluate(() => document.documentElement.lang);
  if (lang !== 'ru') throw new Error('a ru-RU browser got ' + lang);
  const rub = await viewer.evaluate(() => window.Potok.money(50000, 'RUB'));
  if (rub.replace(/\s/g, ' ') !== '500,00 ₽') throw new Error('money in Russian: ' + JSON.stringify(rub));
  const ruNav = await viewer.textContent('#nav-directory');
  await Promise.all([viewer.waitForURL(base + '/' + STREAMER, { timeout: 10000 }), viewer.click('#lang-en')]);
  await viewer.waitForFunction(() => document.documentElement.lang === 'en', null, { timeout: 10000 });
  const enNav = await viewer.textContent('#nav-directory');
  const enChat = await viewer.textContent('#chat h2');
  if (enNav !== 'Live now' || enChat !== 'Chat' || ruNav === enNav) throw new Error('the switch to English: ' + ruNav + ' / ' + enNav + ' / ' + enChat);
  await Promise.all([viewer.waitForURL(base + '/' + STREAMER, { timeout: 10000 }), viewer.click('#lang-ru')]);
  const back = await viewer.textContent('#nav-directory');
  if (back !== ruNav) throw new Error('the switch back to Russian: ' + back);
  passed('ru_en_switch', { ru: ruNav, en: enNav, money: rub });

  // --- the directory lists the live stream ------------------------------------------
  await viewer.goto(base + '/');
  await viewer.waitForSelector('.card[data-name="' + STREAMER + '"]', { timeout: 15000 });
  passed('directory_lists_the_stream');

  // --- the overlays against the documented feed ------------------------------------
  // The overlay API and the gateway's overlay feed answered by the test as the contract
  // (docs/web.md) describes them: two donations arrive at once and must show one after the
  // other, each with the variant its amount picks; a goal event moves the bar.
  const token = 'ot_contract_0123';
  const state = {
    channel: STREAMER,
    alerts: { variants: [
      { min_amount: 0, animation: 'fade', sound: null, duration_ms: 1500, text_template: '{donor}: {amount}' },
      { min_amount: 100000, animation: 'zoom', sound: null, duration_ms: 1500, text_template: 'БОЛЬШОЙ ДОНАТ от {name}' },
    ], tts: { enabled: true, min_amount: 0 } },
    goal: { id: 'g1', title: 'Микрофон', description: '', target_amount: 1000000, current_amount: 100000, currency: 'RUB', deadline: null, is_active: true },
    competition: null,
    offset: 0,
  };
  const feed = async (page, kind) => {
    let socket = null;
    await page.route('**/api/v1/overlay/' + token, (r) => r.fulfill({ json: state }));
    await page.routeWebSocket(/\/api\/v1\/realtime$/, (ws) => {
      ws.onMessage((m) => {
        const f = JSON.parse(String(m));
        if (f.type === 'subscribe') { socket = ws; ws.send(JSON.stringify({ type: 'subscribed', channel: f.channel, offset: 0 })); }
      });
    });
    await page.goto(base + '/overlay/' + token + '/' + kind);
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 15000 });
    return (offset, data) => socket.send(JSON.stringify({ type: 'event', channel: 'overlay:' + STREAMER, offset, data }));
  };
  const contract = await newPage('overlay-contract', { viewport: { width: 1920, height: 1080 } });
  const send = await feed(contract, 'alerts');
  await contract.evaluate(() => {
    window.most = 0;
    new MutationObserver(() => { window.most = Math.max(window.most, document.querySelectorAll('.alert').length); }).observe(document.getElementById('app'), { childList: true });
  });
  const don = (id, donor_name, amount, message) => ({ kind: 'donation', donation: { id, channel: STREAMER, donor_name, amount, currency: 'RUB', message, type: 'money', is_anonymous: false, timestamp: Date.now(), gift: null } });
  send(1, don('d1', 'Аня', 50000, '<img src=x onerror="window.__xss=1">'));
  send(2, don('d2', 'Борис', 150000, 'ещё'));
  await contract.waitForFunction(() => { const a = document.querySelector('.alert.in'); return a && a.querySelector('.alert-name').textContent === 'Аня'; }, null, { timeout: 10000 });
  const first = await contract.evaluate(() => ({ title: document.querySelector('.alert .alert-title').textContent, amount: document.querySelector('.alert .alert-amount').textContent, message: document.querySelector('.alert .alert-message').textContent, anim: document.querySelector('.alert').className }));
  await contract.waitForFunction(() => getComputedStyle(document.querySelector('.alert')).opacity === '1', null, { timeout: 5000 });
  report.screenshot = join(outDir, 'alert-contract.png');
  await contract.screenshot({ path: report.screenshot, omitBackground: true });
  await contract.waitForFunction(() => { const a = document.querySelector('.alert.in'); return a && a.querySelector('.alert-name').textContent === 'Борис'; }, null, { timeout: 10000 });
  const second = await contract.evaluate(() => ({ title: document.querySelector('.alert .alert-title').textContent, anim: document.querySelector('.alert').className, most: window.most, xss: window.__xss === undefined ? null : window.__xss, imgs: document.querySelectorAll('.alert img').length }));
  if (first.amount.replace(/\s/g, ' ') !== '500,00 ₽' || first.title.replace(/\s/g, ' ') !== 'Аня: 500,00 ₽' || !first.anim.includes('anim-fade') || first.message !== '<img src=x onerror="window.__xss=1">') throw new Error('first alert ' + JSON.stringify(first));
  if (second.title !== 'БОЛЬШОЙ ДОНАТ от Борис' || !second.anim.includes('anim-zoom') || second.most !== 1 || second.xss !== null || second.imgs !== 0) throw new Error('second alert ' + JSON.stringify(second));
  passed('overlay_alerts_queue_variants', { first, second });

  const goalOverlay = await newPage('goal-contract', { viewport: { width: 1920, height: 1080 } });
  const sendGoal = await feed(goalOverlay, 'goal');
  const pct0 = await goalOverlay.getAttribute('.goal', 'data-pct');
  sendGoal(1, { kind: 'goal', goal: { ...state.goal, current_amount: 600000 } });
  await goalOverlay.waitForFunction(() => document.querySelector('.goal').dataset.pct === '60.00', null, { timeout: 10000 });
  const amounts = await goalOverlay.textContent('.goal-amounts');
  if (pct0 !== '10.00' || amounts.replace(/\s/g, ' ') !== '6 000,00 ₽ из 10 000,00 ₽') throw new Error('goal overlay ' + pct0 + ' ' + amounts);
  passed('overlay_goal_bar_moves', { amounts });
  await contract.context().close();
  await goalOverlay.context().close();

  // The dashboard's alert preview plays the overlay's alert in place.
  await streamer.goto(base + '/dashboard');
  await streamer.waitForSelector('#preview-alert', { timeout: 15000 });
  await streamer.click('#preview-alert');
  await streamer.waitForFunction((n) => { const a = document.querySelector('#alert-preview .alert .alert-name'); return a && a.textContent === n; }, STREAMER, { timeout: 10000 });
  passed('dashboard_alert_preview');

  // --- donations, alerts and the goal (needs the donations API) --------------------
  const optionsStatus = await viewer.evaluate(async (u) => (await fetch(u)).status, '/api/v1/channels/' + STREAMER + '/donation-options');
  if (optionsStatus !== 404) {
    await streamer.goto(base + '/dashboard');
    await streamer.waitForSelector('#create-overlay:not([hidden])', { timeout: 15000 });
    await streamer.fill('#goal-title', 'Новый микрофон');
    await streamer.fill('#goal-target', '10000');
    await streamer.click('#goal-form button[type=submit]');
    await streamer.waitForSelector('#goals .goal', { timeout: 10000 });
    await streamer.click('#create-overlay');
    await streamer.waitForSelector('.overlay-url[data-kind="alerts"]', { timeout: 10000 });
    const alertsUrl = (await streamer.textContent('.overlay-url[data-kind="alerts"]')).trim();
    const goalUrl = (await streamer.textContent('.overlay-url[data-kind="goal"]')).trim();
    const overlay = await newPage('overlay', { viewport: { width: 1920, height: 1080 } });
    await overlay.goto(alertsUrl);
    await overlay.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 15000 });
    // Headless Chromium has no voice: the overlay asks the server to read the alert.
    const spoken = overlay.waitForResponse((r) => r.url().includes('/speech/'), { timeout: 45000 }).catch(() => null);
    const goalPage = await newPage('goal-overlay', { viewport: { width: 1920, height: 1080 } });
    await goalPage.goto(goalUrl);
    await goalPage.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 15000 });
    const before = Number(await goalPage.getAttribute('.goal', 'data-current'));

    await viewer.goto(base + '/' + STREAMER);
    await viewer.waitForSelector('#donate:not([hidden])', { timeout: 15000 });
    await viewer.click('#donate');
    await viewer.fill('#donate-amount', '500');
    await viewer.fill('#donate-message', 'на микрофон <b>жирно</b>');
    await viewer.click('#donate-pay');
    await viewer.waitForFunction(() => location.pathname.startsWith('/pay/') || (document.getElementById('donate-error') || {}).textContent, null, { timeout: 15000 });
    if (!new URL(viewer.url()).pathname.startsWith('/pay/')) throw new Error('the donation was refused: ' + await viewer.textContent('#donate-error'));
    await viewer.waitForSelector('#pay', { timeout: 15000 });
    await Promise.all([viewer.waitForURL(new RegExp('/' + STREAMER + '\\?donated=1'), { timeout: 15000 }), viewer.click('#pay')]);
    await overlay.waitForFunction((name) => [...document.querySelectorAll('.alert .alert-name')].some((e) => e.textContent === name), VIEWER, { timeout: 15000 });
    const shown = await overlay.evaluate(() => ({ amount: document.querySelector('.alert .alert-amount').textContent, message: (document.querySelector('.alert .alert-message') || {}).textContent }));
    if (shown.amount.replace(/\s/g, ' ') !== '500,00 ₽') throw new Error('alert amount ' + JSON.stringify(shown));
    await overlay.waitForFunction(() => { const a = document.querySelector('.alert'); return a && getComputedStyle(a).opacity === '1'; }, null, { timeout: 5000 });
    report.screenshot = join(outDir, 'alert.png');
    await overlay.screenshot({ path: report.screenshot, omitBackground: true });
    passed('donation_alert_on_overlay', shown);
    const voices = await overlay.evaluate(() => (window.speechSynthesis ? speechSynthesis.getVoices().length : 0));
    if (!voices) {
      const r = await spoken;
      const got = r && { status: r.status(), type: r.headers()['content-type'], bytes: (await r.body()).length };
      if (!got || got.status !== 200 || got.type !== 'audio/wav' || got.bytes < 1000) throw new Error('no server speech: ' + JSON.stringify(got));
      // Only a completed donation of the token's channel is ever read; never for others.
      const refusals = await overlay.evaluate(async () => {
        const token = location.pathname.split('/')[2];
        const st = async (u) => (await fetch(u)).status;
        return [await st('/api/v1/overlay/ov_unknown/speech/x'), await st('/api/v1/overlay/' + token + '/speech/no-such-donation'), await st('/api/v1/overlay/' + token + '/speech/x?lang=klingon')];
      });
      if (JSON.stringify(refusals) !== '[401,404,422]') throw new Error('speech refusals ' + JSON.stringify(refusals));
      passed('overlay_server_speech', got);
    }
    await goalPage.waitForFunction((b) => Number(document.querySelector('.goal').dataset.current) >= b + 50000, before, { timeout: 15000 });
    passed('goal_bar_moves');
    // A competition: the dialog offers its options and the donation counts for the one
    // picked.
    const comp = await streamer.evaluate((n) => window.Potok.api('POST', '/api/v1/channels/' + n + '/competitions', { title: 'Какую игру дальше?', options: ['Doom', 'Quake'], duration_secs: 600 }), STREAMER);
    const quake = comp.options.find((x) => x.label === 'Quake').id;
    await viewer.reload();
    await viewer.waitForSelector('#donate:not([hidden])', { timeout: 15000 });
    await viewer.click('#donate');
    await viewer.waitForSelector('#donate-vote', { timeout: 5000 });
    await viewer.selectOption('#donate-vote', quake);
    await viewer.fill('#donate-amount', '150');
    await viewer.click('#donate-pay');
    await viewer.waitForSelector('#pay', { timeout: 15000 });
    await Promise.all([viewer.waitForURL(new RegExp('/' + STREAMER + '\\?donated=1'), { timeout: 15000 }), viewer.click('#pay')]);
    await viewer.waitForFunction(async ([n, q]) => {
      const c = await window.Potok.api('GET', '/api/v1/channels/' + n + '/competitions/current');
      return c && c.options.find((x) => x.id === q).total === 15000;
    }, [STREAMER, quake], { timeout: 15000, polling: 500 });
    passed('donation_votes_in_a_competition');
    // A song request through the same dialog: paid in the sandbox, then in the streamer's
    // queue (checked on the dashboard below).
    await viewer.click('#donate');
    await viewer.click('#donate-dialog .kind.request[data-request="song"]');
    await viewer.waitForSelector('#donate-request', { state: 'visible', timeout: 5000 });
    await viewer.fill('#donate-request', 'Кино — Группа крови');
    await viewer.click('#donate-pay');
    await viewer.waitForFunction(() => location.pathname.startsWith('/pay/') || (document.getElementById('donate-error') || {}).textContent, null, { timeout: 15000 });
    if (!new URL(viewer.url()).pathname.startsWith('/pay/')) throw new Error('the request was refused: ' + await viewer.textContent('#donate-error'));
    await viewer.waitForSelector('#pay', { timeout: 15000 });
    await Promise.all([viewer.waitForURL(new RegExp('/' + STREAMER + '\\?donated=1'), { timeout: 15000 }), viewer.click('#pay')]);
    report.song = 'paid';
    report.donations = 'checked';
  }
  // --- thumbnails, recordings on the dashboard, the offline page's last broadcast ----
  await viewer.goto(base + '/');
  await viewer.waitForFunction((n) => {
    const i = document.querySelector('.card[data-name="' + n + '"] img.thumb-img');
    return i && !i.hidden && i.complete && i.naturalWidth > 0;
  }, STREAMER, { timeout: 45000, polling: 500 });
  passed('directory_thumbnail');

  await streamer.goto(base + '/dashboard');
  // Stream health from the origin: the publisher's frame rate, keyframes every 2 s, the
  // ladder's rungs.
  await streamer.waitForFunction(() => {
    const fps = document.getElementById('health-fps');
    const rungs = document.getElementById('health-rungs');
    return fps && Number(fps.dataset.value) >= 20 && Number(rungs.dataset.count) >= 1
      && /2(\.0)?\s/.test(document.getElementById('health-keyframes').textContent)
      && Number(document.getElementById('health-bitrate').dataset.value) > 100;
  }, null, { timeout: 30000, polling: 500 });
  passed('dashboard_stream_health');
  if (report.song) {
    await streamer.waitForFunction(() => [...document.querySelectorAll('#requests li')].some((li) => li.textContent.includes('Кино — Группа крови')), null, { timeout: 20000, polling: 500 });
    passed('song_request_in_the_queue');
  }
  await streamer.waitForSelector('#rec-settings:not([hidden]) #rec-retention', { timeout: 15000 });
  await streamer.fill('#rec-retention', '14');
  await streamer.click('#rec-settings button[type=submit]');
  await streamer.waitForSelector('#rec-settings .notice.ok', { timeout: 10000 });
  const saved = await streamer.evaluate((n) => window.Potok.api('GET', '/api/v1/channels/' + n + '/recording-settings'), STREAMER);
  if (saved.retention_days !== 14 || saved.record !== true) throw new Error('recording settings ' + JSON.stringify(saved));
  // Every broadcast is recorded by default: the dashboard says so and stops it.
  await streamer.waitForFunction(() => document.getElementById('rec-state').dataset.recording === 'true', null, { timeout: 20000 });
  await streamer.click('#rec-toggle');
  await streamer.waitForFunction(() => document.getElementById('rec-state').dataset.recording === 'false', null, { timeout: 20000 });
  await streamer.waitForSelector('#recordings li .rec-delete:not([hidden])', { timeout: 60000 });
  passed('dashboard_recordings');

  // The broadcast ends while a viewer watches: the page goes offline by itself (after the
  // reconnect grace period and what was buffered) and offers the last recording; a reload
  // shows the same.
  await viewer.goto(base + '/' + STREAMER);
  await viewer.waitForFunction(() => { const v = document.getElementById('player'); return !document.getElementById('live-badge').hidden && v.currentTime > 1; }, null, { timeout: 30000, polling: 250 });
  const seen = [];
  viewer.on('response', (r) => { if (r.url().includes('/live/')) seen.push(Date.now() % 100000 + ' ' + r.status() + ' ' + r.url().replace(/^.*\/live\//, '')); });
  const offlineWithLast = async (timeout) => viewer.waitForSelector('#offline:not([hidden]) #play-last', { timeout }).catch(async (e) => {
    const state = await viewer.evaluate(async (n) => ({
      offline: document.getElementById('offline').hidden,
      last: document.getElementById('offline-last') && document.getElementById('offline-last').hidden,
      list: await (await fetch('/api/v1/recordings?channel=' + n + '&kind=recording&finished=true&limit=1')).text(),
    }), STREAMER);
    throw new Error(String(e).slice(0, 300) + ' ' + JSON.stringify(state) + ' ' + seen.slice(-40).join('; '));
  });
  say({ event: 'stop_push' });
  await offlineWithLast(60000);
  await viewer.goto(base + '/' + STREAMER);
  await offlineWithLast(15000);
  await viewer.click('#play-last', { timeout: 10000 });
  await viewer.waitForFunction(() => { const v = document.getElementById('player'); return v.dataset.vod && v.currentTime > 2; }, null, { timeout: 30000, polling: 250 });
  passed('offline_plays_last_recording');

  // The directory's recent broadcasts: the recording with its poster, which plays on its
  // channel's page; "back to the channel" leaves it for the offline state.
  await viewer.goto(base + '/');
  const recId = await viewer.waitForFunction(() => {
    const c = document.querySelector('#recent:not([hidden]) .card.recording');
    const i = c && c.querySelector('img.thumb-img');
    return i && !i.hidden && i.complete && i.naturalWidth > 0 && c.dataset.id;
  }, null, { timeout: 20000, polling: 500 }).then((h) => h.jsonValue());
  await viewer.click('#recent .card.recording[data-id="' + recId + '"]');
  await viewer.waitForFunction((id) => {
    const v = document.getElementById('player');
    return new URLSearchParams(location.search).get('vod') === id && v.dataset.vod === id && v.currentTime > 2;
  }, recId, { timeout: 30000, polling: 250 });
  await viewer.click('#to-channel');
  await viewer.waitForSelector('#offline:not([hidden]) #play-last', { timeout: 15000 });
  passed('directory_plays_recording');
  report.ok = true;
} catch (e) {
  report.error = String(e && e.stack || e).slice(0, 8000);
} finally {
  await browser.close();
}
say(report);
