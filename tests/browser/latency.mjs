// Glass-to-glass latency in headless Chromium, for `bench web-latency`: the publisher burns
// each frame's media time (ms) into the picture as 24 black/white blocks (a row of bits
// and a row of their complements, 40x40 px each at 1280x720, top left); this script reads
// them back from every third presented frame (requestVideoFrameCallback → canvas) and
// records when the frame was shown.
//
//   node latency.mjs WATCH_PAGE_URL MASTER_URL SECONDS
//
// Plays the watch page (Potok's player settings), then a page with plain hls.js defaults
// (`new Hls()`) on MASTER_URL, SECONDS each. Prints one JSON line:
// {"ok":bool,"watch":[[shownAtUnixMs, mediaMs],...],"plain":[...],"errors":[..]}.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [watchUrl, masterUrl, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 20);
const here = dirname(fileURLToPath(import.meta.url));

const plainPage = `<!doctype html><meta charset="utf-8"><title>plain hls.js</title>
<video id="player" muted autoplay playsinline></video>
<script src="/hls.js"></script>
<script>
  const hls = new Hls();
  hls.loadSource(${JSON.stringify(masterUrl)});
  hls.attachMedia(document.getElementById('player'));
  hls.on(Hls.Events.MANIFEST_PARSED, () => document.getElementById('player').play().catch(() => {}));
</script>`;
const server = createServer(async (req, res) => {
  if (req.url === '/hls.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(await readFile(join(here, 'node_modules/hls.js/dist/hls.min.js')));
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(plainPage);
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const plainUrl = `http://127.0.0.1:${server.address().port}/`;

// Runs in the page: samples for `ms` milliseconds.
const sample = (ms) => new Promise((resolve) => {
  const video = document.getElementById('player');
  const canvas = document.createElement('canvas');
  canvas.width = 480;
  canvas.height = 270;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  const out = [];
  const end = performance.now() + ms;
  let n = 0;
  const frame = (now, meta) => {
    if (performance.now() > end) { resolve(out); return; }
    if (n++ % 3 === 0) {
      g.drawImage(video, 0, 0, 480, 270);
      const px = g.getImageData(0, 0, 480, 30).data;
      const lum = (x, y) => { const i = (y * 480 + x) * 4; return (px[i] + px[i + 1] + px[i + 2]) / 3; };
      let v = 0, ok = true;
      for (let b = 0; b < 24; b++) {
        const x = Math.round((b * 40 + 20) * 480 / 1280);
        const hi = lum(x, 7) > 128, lo = lum(x, 22) > 128;
        if (hi === lo) { ok = false; break; }
        if (hi) v += 2 ** b;
      }
      if (ok) out.push([performance.timeOrigin + meta.expectedDisplayTime, v]);
    }
    video.requestVideoFrameCallback(frame);
  };
  video.requestVideoFrameCallback(frame);
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const result = { ok: false, watch: [], plain: [], errors: [] };
try {
  for (const [name, url] of [['watch', watchUrl], ['plain', plainUrl]]) {
    const page = await browser.newPage();
    page.on('pageerror', (e) => result.errors.push(name + ': ' + e));
    await page.goto(url);
    await page.waitForFunction(() => { const v = document.getElementById('player'); return v && v.currentTime > 0; }, null, { timeout: 60000, polling: 200 });
    // Let the player settle (its start-up catch-up is part of the steady state measured).
    await page.waitForTimeout(3000);
    result[name] = await page.evaluate(sample, seconds * 1000);
    await page.close();
  }
  result.ok = true;
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
