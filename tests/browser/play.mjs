// Plays an HLS URL with hls.js in headless Chromium and reports what the viewer saw.
//
//   node play.mjs URL SECONDS [SWITCHES]
//
// Prints one JSON line: {"ok":bool,"startTime":..,"endTime":..,"latencies":[..],
// "fatal":[..],"errors":[..],"levels":n,"switches":[..]}. Exit code 0 when the page ran;
// the caller judges the numbers. SWITCHES (optional) forces that many level switches.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, secondsArg, switchesArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 15);
const switches = Number(switchesArg || 0);
const here = dirname(fileURLToPath(import.meta.url));

const page = `<!doctype html><meta charset="utf-8"><title>potok player test</title>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.js"></script>
<script>
  window.report = { fatal: [], errors: [], latencies: [], switches: [], levels: 0 };
  const video = document.getElementById('v');
  const hls = new Hls({ lowLatencyMode: true, debug: false });
  window.hls = hls;
  hls.on(Hls.Events.ERROR, (_, d) => {
    const e = d.type + ':' + d.details;
    (d.fatal ? window.report.fatal : window.report.errors).push(e);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { window.report.levels = d.levels.length; video.play().catch(e => window.report.errors.push('play:' + e)); });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => window.report.switches.push(d.level));
  hls.loadSource(${JSON.stringify(url)});
  hls.attachMedia(video);
</script>`;

const server = createServer(async (req, res) => {
  if (req.url === '/hls.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(await readFile(join(here, 'node_modules/hls.js/dist/hls.min.js')));
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
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
let result;
try {
  const tab = context.pages()[0] || await context.newPage();
  await tab.goto(pageUrl);
  // Wait (bounded) for playback to start.
  await tab.waitForFunction(() => document.getElementById('v').currentTime > 0, null, { timeout: 20000 });
  const startTime = await tab.evaluate(() => document.getElementById('v').currentTime);
  const started = Date.now();
  let switched = 0;
  while (Date.now() - started < seconds * 1000) {
    await tab.waitForTimeout(500);
    await tab.evaluate(() => { if (window.hls.latency > 0) window.report.latencies.push(window.hls.latency); });
    if (switched < switches && Date.now() - started > (switched + 1) * (seconds * 1000) / (switches + 1)) {
      await tab.evaluate((n) => { const h = window.hls; h.currentLevel = (h.currentLevel + 1) % Math.max(1, h.levels.length); }, switched);
      switched++;
    }
  }
  const endTime = await tab.evaluate(() => document.getElementById('v').currentTime);
  const report = await tab.evaluate(() => window.report);
  result = { ok: true, startTime, endTime, ...report };
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  await context.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
