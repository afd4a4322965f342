// @chorus/react in a real headless Chromium against a real `chorus serve`:
// a page built with esbuild from the test's own sources (pages/react.jsx)
// with the hooks' sources, open twice. Each page lists both members; a
// title set on one page and a counter clicked on the other show on both,
// re-rendering only the components that show them; text typed into the
// useCodeMirror editor of one page appears in the other's.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { buildPage, eventually, launchChromium, repo, servePages, startChorus } from './support.js';

const shots = path.join(repo, 'target/browser-screenshots');
let chorus, pages, browser;

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  const built = await buildPage('react', 'react.jsx');
  chorus = await startChorus();
  pages = await servePages(built);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  pages?.close();
  await chorus?.stop();
});

async function open(room, name) {
  const page = await (await browser.newContext({ viewport: { width: 900, height: 700 } })).newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  const ws = chorus.base.replace(/^http/, 'ws') + '/v1/ws';
  await page.goto(`${pages.base}/react.html?ws=${encodeURIComponent(ws)}&room=${room}&name=${name}`);
  await eventually(`${name}'s page`, async () => (await page.locator('[data-testid=app]').count()) === 1);
  return page;
}

const text = (page, id) => page.locator(`[data-testid=${id}]`).textContent();
const renders = (page) => page.evaluate(() => ({ ...window.renders }));

test('members and shared values update live, re-rendering only what shows them', async () => {
  const room = `react-${Date.now().toString(36)}`;
  const ann = await open(room, 'Ann');
  const bob = await open(room, 'Bob');
  for (const page of [ann, bob]) {
    await eventually('both members on each page', async () => (await text(page, 'members')) === 'AnnBob');
  }

  // Ann sets the title: Bob's title changes; his members and counter do not re-render.
  const before = await renders(bob);
  await ann.locator('[data-testid=title-input]').fill('Launch plan');
  await ann.locator('[data-testid=title-input]').press('Enter');
  await eventually("the title on Bob's page", async () => (await text(bob, 'title')) === 'Launch plan');
  const afterTitle = await renders(bob);
  assert.ok(afterTitle.title > before.title, 'the title re-rendered');
  assert.equal(afterTitle.members, before.members, 'the members did not');
  assert.equal(afterTitle.counter, before.counter, 'the counter did not');

  // Bob clicks +1 twice: Ann's count follows; her title does not re-render.
  const annBefore = await renders(ann);
  await bob.locator('[data-testid=plus]').click();
  await bob.locator('[data-testid=plus]').click();
  await eventually("the count on Ann's page", async () => (await text(ann, 'count')) === '2');
  const annAfter = await renders(ann);
  assert.ok(annAfter.counter > annBefore.counter);
  assert.equal(annAfter.title, annBefore.title, 'the title did not re-render');

  // The editor from useCodeMirror: Ann types, Bob's editor and text hook follow.
  await ann.locator('.cm-content').click();
  await ann.keyboard.type('Hello from React 👋');
  const notes = (page) => page.locator('[data-testid=notes]').getAttribute('data-text');
  await eventually("Ann's text on Bob's page", async () => (await notes(bob)) === 'Hello from React 👋');
  assert.equal(await text(bob, 'length'), `${'Hello from React 👋'.length} characters`);
  // Bob's editor shows it (its lines, without the carets' name labels).
  const lines = await bob.locator('.cm-line').evaluateAll((els) => els.map((e) => [...e.childNodes].filter((n) => !n.classList?.contains('cm-chorus-caret')).map((n) => n.textContent).join('')));
  assert.deepEqual(lines, ['Hello from React 👋']);
  assert.equal(await text(ann, 'status'), 'open');

  // Bob leaves: Ann's list shrinks.
  await bob.context().close();
  await eventually("Bob gone from Ann's page", async () => (await text(ann, 'members')) === 'Ann');
  await ann.screenshot({ path: path.join(shots, 'react-ann.png') });
  await ann.context().close();
});
