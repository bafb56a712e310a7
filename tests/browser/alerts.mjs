// The alerts overlay in headless Chromium, for `bench alerts`: opens the overlay page and
// prints one JSON line per alert when its box is on screen (the animation frame after it
// was added): {"event":"shown","id":DONATION_ID,"at":UNIX_MS}, and {"event":"gone","id":...}
// when it has left. "ready" first, once the page has subscribed; it runs until stdin closes.
//
//   node alerts.mjs OVERLAY_ALERTS_URL
import { chromium } from 'playwright-core';

const [url] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  page.on('pageerror', (e) => say({ event: 'error', error: String(e) }));
  await page.exposeFunction('potokShown', (id, at) => say({ event: 'shown', id, at }));
  await page.exposeFunction('potokGone', (id) => say({ event: 'gone', id }));
  await page.addInitScript(() => {
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) {
          if (n.nodeType === 1 && n.classList.contains('alert')) {
            // On screen from the next frame.
            requestAnimationFrame(() => window.potokShown(n.dataset.id, performance.timeOrigin + performance.now()));
          }
        }
        for (const n of r.removedNodes) {
          if (n.nodeType === 1 && n.classList.contains('alert')) window.potokGone(n.dataset.id);
        }
      }
    }).observe(document, { childList: true, subtree: true });
  });
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 30000, polling: 100 });
  say({ event: 'ready' });
  await new Promise((resolve) => { process.stdin.on('end', resolve); process.stdin.on('close', resolve); process.stdin.resume(); });
} catch (e) {
  say({ event: 'error', error: String(e) });
} finally {
  await browser.close();
}
