// Plays an HLS URL in headless Chromium with hls.js or shaka-player and reports what the
// viewer saw.
//
//   node play.mjs URL SECONDS [SWITCHES] [PLAYER] [PIN]
//
// PLAYER is `hls` (hls.js, the default) or `shaka` (shaka-player, low-latency mode on).
// SWITCHES (optional) forces that many level switches (hls.js). PIN (optional) names a
// variant by its playlist URI's folder (e.g. `480p`): once playback has started the player
// is held on it (ABR off) and `{"event":"pinned"}` is printed, so the caller can act on
// that variant (shed it) while it plays.
//
// Prints one JSON line last: {"ok":bool,"player":..,"startTime":..,"endTime":..,
// "latencies":[..],"fatal":[..],"errors":[..],"levels":n,"switches":[..] (hls.js: level
// indexes; shaka: heights),"heights":[..] (the variant heights played, in order),"disabled":[..],
// "requests":n,"httpErrors":[..],"pinnedAt":..}. Exit code 0 when the page ran; the caller
// judges the numbers.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, secondsArg, switchesArg, playerArg, pinArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 15);
const switches = Number(switchesArg || 0);
const player = playerArg || 'hls';
const pin = pinArg || '';
const here = dirname(fileURLToPath(import.meta.url));

const common = `
  window.report = { fatal: [], errors: [], latencies: [], switches: [], heights: [], levels: 0, disabled: [], pinned: false };
  const video = document.getElementById('v');
  const pin = ${JSON.stringify(pin)};
  const folder = (uri) => (uri || '').split('?')[0].split('/').slice(-2, -1)[0] || '';
`;

const hlsPage = `<!doctype html><meta charset="utf-8"><title>potok player test</title>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.js"></script>
<script>${common}
  const hls = new Hls({ lowLatencyMode: true, debug: false });
  window.player = hls;
  const levelUri = (l) => l.uri || (Array.isArray(l.url) ? l.url[0] : l.url);
  const ranges = () => {
    const b = video.buffered;
    const r = [];
    for (let i = 0; i < b.length; i++) r.push(b.start(i).toFixed(2) + '-' + b.end(i).toFixed(2));
    return '[' + r.join(' ') + '] t=' + video.currentTime.toFixed(2);
  };
  hls.on(Hls.Events.ERROR, (_, d) => {
    let e = d.type + ':' + d.details + (d.response ? ':' + d.response.code : '');
    if (d.type === 'mediaError') e += ' ' + ranges() + (d.frag ? ' frag ' + d.frag.sn + (d.part ? '.' + d.part.index : '') : '');
    (d.fatal ? window.report.fatal : window.report.errors).push(e);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { window.report.levels = d.levels.length; video.play().catch(e => window.report.errors.push('play:' + e)); });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
    window.report.switches.push(d.level);
    window.report.heights.push((hls.levels[d.level] || {}).height || 0);
  });
  window.report.frags = [];
  hls.on(Hls.Events.FRAG_BUFFERED, (_, d) => {
    if (window.report.frags.length >= 12) return;
    window.report.frags.push(d.frag.sn + '.' + (d.part ? d.part.index + (d.part.independent ? 'I' : '') : 'seg') + ' L' + d.frag.level + ' ' + d.frag.start.toFixed(2) + ' ' + ranges());
  });
  window.latency = () => hls.latency;
  window.nextLevel = () => { hls.currentLevel = (hls.currentLevel + 1) % Math.max(1, hls.levels.length); };
  window.pinVariant = () => {
    const i = hls.levels.findIndex(l => folder(levelUri(l)) === pin);
    if (i < 0) return false;
    // Once: every assignment is an immediate switch that aborts the loads in flight.
    if (!window.pinRequested) {
      window.pinRequested = true;
      hls.currentLevel = i;
    }
    return true;
  };
  window.onPinned = () => hls.currentLevel >= 0 && folder(levelUri(hls.levels[hls.currentLevel])) === pin;
  hls.loadSource(${JSON.stringify(url)});
  hls.attachMedia(video);
</script>`;

const shakaPage = `<!doctype html><meta charset="utf-8"><title>potok player test</title>
<video id="v" muted autoplay playsinline></video>
<script src="/shaka.js"></script>
<script>${common}
  shaka.polyfill.installAll();
  const player = new shaka.Player();
  window.player = player;
  // Low-latency mode is the default for LL-HLS in shaka 5; say so anyway.
  player.configure({ streaming: { lowLatencyMode: true } });
  // shaka also disables a variant whose video drops over 15 % of its frames: that measures
  // the test machine's CPU (software decoding, headless, next to the ladder), not the
  // stream, so it is off here; every other disable is recorded below.
  player.configure({ abr: { droppedFrames: false } });
  // Every disabled variant is recorded: a hinted part that 404s disables one.
  const disable = player.disableStream.bind(player);
  player.disableStream = (stream, time) => {
    window.report.disabled.push((stream && (stream.type + ':' + stream.id)) + ' for ' + time + ' s at ' + video.currentTime.toFixed(1) + ' s: ' + (new Error().stack || '').split(String.fromCharCode(10)).slice(2, 7).map(l => l.trim()).join(' < '));
    return disable(stream, time);
  };
  player.addEventListener('error', (e) => {
    const d = e.detail || {};
    const s = 'shaka:' + d.code + ':' + d.severity + ':' + JSON.stringify(d.data || []).slice(0, 200);
    (d.severity === 2 ? window.report.fatal : window.report.errors).push(s);
  });
  const active = () => player.getVariantTracks().find(t => t.active);
  let last = null;
  const note = () => {
    const t = active();
    if (t && t.height !== last) { last = t.height; window.report.switches.push(t.height); window.report.heights.push(t.height); }
  };
  player.addEventListener('variantchanged', note);
  player.addEventListener('adaptation', note);
  window.latency = () => player.getStats().liveLatency;
  window.nextLevel = () => {};
  window.pinVariant = () => {
    const tracks = player.getVariantTracks();
    // Variants have no URI in the track list: match the pinned rendition by height, from
    // the multivariant playlist read by the test page itself.
    const t = tracks.find(t => t.height === window.pinHeight);
    if (!t) return false;
    if (!window.pinRequested) {
      window.pinRequested = true;
      player.configure({ abr: { enabled: false } });
      player.selectVariantTrack(t, true);
    }
    return true;
  };
  window.onPinned = () => { const t = active(); return !!t && t.height === window.pinHeight; };
  (async () => {
    if (pin) {
      const text = await (await fetch(${JSON.stringify(url)})).text();
      const lines = text.split('\\n');
      for (let i = 0; i < lines.length; i++) {
        if (folder(lines[i + 1] || '') === pin && lines[i].startsWith('#EXT-X-STREAM-INF')) {
          const m = /RESOLUTION=\\d+x(\\d+)/.exec(lines[i]);
          if (m) window.pinHeight = Number(m[1]);
        }
      }
    }
    await player.attach(video);
    try {
      await player.load(${JSON.stringify(url)});
      window.report.levels = player.getVariantTracks().length;
      note();
      video.play().catch(e => window.report.errors.push('play:' + e));
    } catch (e) {
      window.report.fatal.push('load:' + (e && e.code) + ':' + e + ':' + (e && e.stack || '').slice(0, 1500));
    }
  })();
</script>`;

const server = createServer(async (req, res) => {
  if (req.url === '/hls.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(await readFile(join(here, 'node_modules/hls.js/dist/hls.min.js')));
  } else if (req.url === '/shaka.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(await readFile(join(here, 'node_modules/shaka-player/dist/shaka-player.compiled.js')));
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(player === 'shaka' ? shakaPage : hlsPage);
  }
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const pageUrl = `http://127.0.0.1:${server.address().port}/`;

const profile = await mkdtemp(join(tmpdir(), 'potok-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic', '--ignore-certificate-errors',
    '--autoplay-policy=no-user-gesture-required'],
});
// Every request the player makes to the stream's server, and every error answer.
const stream = new URL(url);
let requests = 0;
const httpErrors = [];
// The first requests and the page's console errors, for a failure's report.
const trace = [];
const consoleErrors = [];
// Responses that took over a second (a held request answered late).
const slow = [];
const ours = (u) => { try { return new URL(u).host === stream.host; } catch { return false; } };
let result;
try {
  const tab = context.pages()[0] || await context.newPage();
  tab.on('response', (r) => {
    if (!ours(r.url())) return;
    requests++;
    if (trace.length < 40) trace.push(r.status() + ' ' + r.url());
    const t = r.request().timing();
    const ms = t.responseEnd > 0 ? t.responseEnd : t.responseStart;
    if (ms > 1000 && slow.length < 30) slow.push(Math.round(ms) + ' ms ' + new URL(r.url()).pathname + new URL(r.url()).search);
    if (r.status() >= 400) httpErrors.push(r.status() + ' ' + new URL(r.url()).pathname);
  });
  tab.on('requestfailed', (r) => {
    if (!ours(r.url())) return;
    const why = r.failure() ? r.failure().errorText : '';
    // A player cancelling a request it no longer needs is not an HTTP error.
    if (why !== 'net::ERR_ABORTED') httpErrors.push('failed ' + why + ' ' + new URL(r.url()).pathname);
  });
  tab.on('console', (m) => { if (m.type() === 'error' && consoleErrors.length < 20) consoleErrors.push(m.text()); });
  tab.on('pageerror', (e) => { if (consoleErrors.length < 20) consoleErrors.push(String(e)); });
  await tab.goto(pageUrl);
  // Wait (bounded) for playback to start.
  await tab.waitForFunction(() => document.getElementById('v').currentTime > 0, null, { timeout: 20000 });
  const startTime = await tab.evaluate(() => document.getElementById('v').currentTime);
  const started = Date.now();
  let pinnedAt = null;
  if (pin) {
    await tab.waitForFunction(() => window.pinVariant(), null, { timeout: 10000 });
    await tab.waitForFunction(() => window.onPinned(), null, { timeout: 10000, polling: 50 });
    pinnedAt = await tab.evaluate(() => document.getElementById('v').currentTime);
    console.log(JSON.stringify({ event: 'pinned', at: pinnedAt }));
  }
  let switched = 0;
  while (Date.now() - started < seconds * 1000) {
    await tab.waitForTimeout(500);
    await tab.evaluate(() => { const l = window.latency(); if (l > 0) window.report.latencies.push(l); });
    if (switched < switches && Date.now() - started > (switched + 1) * (seconds * 1000) / (switches + 1)) {
      await tab.evaluate(() => window.nextLevel());
      switched++;
    }
  }
  const endTime = await tab.evaluate(() => document.getElementById('v').currentTime);
  const report = await tab.evaluate(() => window.report);
  result = { ok: true, player, startTime, endTime, pinnedAt, requests, httpErrors, slow, ...report };
} catch (e) {
  let report = null;
  try { report = await context.pages()[0].evaluate(() => window.report); } catch { /* page gone */ }
  result = { ok: false, player, error: String(e), requests, httpErrors, trace, consoleErrors, report };
} finally {
  await context.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
