// Cursor traffic in practice: N pages of the demo in one room, each moving
// its caret through the text at a steady rate (as a user dragging a
// selection or holding an arrow key does), for a while. Reports the
// WebSocket messages per second each page sent and received, counted from
// the browser's own frames.
//
//   node tests/browser/cursor-traffic.mjs [--pages 20] [--seconds 10] [--hz 60]
//
// Not a test: a measurement (see the closing notes and README for figures).

import { parseArgs } from 'node:util';
import { startChorus, launchChromium, eventually } from './support.js';

const { values: args } = parseArgs({
  options: { pages: { type: 'string', default: '20' }, seconds: { type: 'string', default: '10' }, hz: { type: 'string', default: '60' } },
});
const pages = Number(args.pages);
const seconds = Number(args.seconds);
const hz = Number(args.hz);

const chorus = await startChorus();
const browser = await launchChromium();
const room = `cursors-${Date.now().toString(36)}`;
const counts = [];
try {
  const opened = [];
  for (let i = 0; i < pages; i++) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const page = await context.newPage();
    const count = { sent: 0, received: 0, cursorsSent: 0, cursorsReceived: 0, counting: false };
    counts.push(count);
    page.on('websocket', (ws) => {
      ws.on('framesent', (f) => {
        if (!count.counting) return;
        count.sent++;
        if (String(f.payload).includes('"type":"cursor"')) count.cursorsSent++;
      });
      ws.on('framereceived', (f) => {
        if (!count.counting) return;
        count.received++;
        if (String(f.payload).includes('"type":"cursor"')) count.cursorsReceived++;
      });
    });
    await page.goto(`${chorus.base}/?room=${room}&name=User${i + 1}`);
    await eventually(`page ${i + 1} to connect`, async () => (await page.locator('[data-testid=state]').textContent()).trim() === 'connected', 30_000);
    opened.push(page);
  }
  // Some text to move through.
  await opened[0].locator('[data-testid=editor]').focus();
  await opened[0].keyboard.type('The quick brown fox jumps over the lazy dog. '.repeat(4));
  await eventually('the text on every page', async () => {
    const texts = await Promise.all(opened.map((p) => p.locator('[data-testid=editor]').inputValue()));
    return texts.every((t) => t.length >= 180);
  }, 30_000);
  for (const c of counts) c.counting = true;
  // Every page moves its caret `hz` times a second, in the page itself, so the
  // rate does not depend on this process keeping up with 20 pages.
  const moves = await Promise.all(
    opened.map((page, i) =>
      page.evaluate(
        ({ hz, seconds, offset }) =>
          new Promise((resolve) => {
            const editor = document.querySelector('[data-testid=editor]');
            editor.focus();
            let step = offset;
            let moved = 0;
            const timer = setInterval(() => {
              const at = step++ % (editor.value.length + 1);
              editor.setSelectionRange(at, at);
              editor.dispatchEvent(new Event('select'));
              moved++;
            }, 1000 / hz);
            setTimeout(() => {
              clearInterval(timer);
              resolve(moved);
            }, seconds * 1000);
          }),
        { hz, seconds, offset: i * 7 },
      ),
    ),
  );
  for (const c of counts) c.counting = false;
  const per = (n) => (n / seconds).toFixed(1);
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  };
  console.log(`${pages} pages, caret moved ${hz} times a second on each, ${seconds} s`);
  // The browser may not manage `hz` moves a second with many pages on few
  // cores; the moves it made are what the traffic follows from.
  console.log('| page | caret moves/s | sent/s | of which cursor | received/s | of which cursor |');
  console.log('|---|---|---|---|---|---|');
  counts.forEach((c, i) => console.log(`| ${i + 1} | ${per(moves[i])} | ${per(c.sent)} | ${per(c.cursorsSent)} | ${per(c.received)} | ${per(c.cursorsReceived)} |`));
  console.log(
    `| median | ${per(median(moves))} | ${per(median(counts.map((c) => c.sent)))} | ${per(median(counts.map((c) => c.cursorsSent)))} | ${per(median(counts.map((c) => c.received)))} | ${per(median(counts.map((c) => c.cursorsReceived)))} |`,
  );
} finally {
  await browser.close();
  await chorus.stop();
}
