// The demo page in a real headless Chromium against a real `chorus serve`:
// two people type at once (emoji included) and end with the same text as the
// server, see each other's caret and name, and one of them goes offline,
// keeps typing, comes back, and every edit arrives once; a title and a tag
// set on one page show on the other, and Ctrl-Z takes back only one's own
// last step.
//
// Screenshots go to target/browser-screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startChorus, startRelay, launchChromium, eventually, repo } from './support.js';

const shots = path.join(repo, 'target/browser-screenshots');
const room = `browser-${Date.now().toString(36)}`;
let chorus, relay, browser;

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  chorus = await startChorus();
  relay = await startRelay(chorus.port);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  relay?.close();
  await chorus?.stop();
});

async function serverText() {
  const res = await fetch(`${chorus.base}/v1/rooms/${encodeURIComponent(room)}/docs/body`);
  assert.equal(res.status, 200);
  return (await res.json()).text;
}

/** A page of its own (own storage, so its own user) for `name`, through `base`. */
async function openPage(base, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  await page.goto(`${base}/?room=${room}&name=${encodeURIComponent(name)}`);
  await eventually(`${name} to connect`, async () => (await page.locator('[data-testid=state]').textContent())?.trim() === 'connected');
  return page;
}

const editor = (page) => page.locator('[data-testid=editor]');
const textOf = (page) => editor(page).inputValue();

async function putCaret(page, at) {
  await editor(page).focus();
  await editor(page).evaluate((el, at) => {
    const index = at === 'end' ? el.value.length : at;
    el.setSelectionRange(index, index);
    el.dispatchEvent(new Event('select'));
  }, at);
}

test('two pages type at once and end with the server text, seeing each other', async () => {
  const ann = await openPage(chorus.base, 'Ann');
  const bob = await openPage(relay.base, 'Bob');
  await eventually('both in the member list', async () => (await ann.locator('[data-testid=members]').textContent()).length > 0 && (await ann.locator('[data-testid=members] [title]').count()) >= 2);

  await putCaret(ann, 'end');
  await ann.keyboard.type('[]');
  await eventually('the brackets on both pages', async () => (await textOf(bob)) === '[]');

  // Ann types at the end while Bob types at the start.
  await putCaret(ann, 'end');
  await putCaret(bob, 0);
  await Promise.all([
    ann.keyboard.type(' Ann was here 😀 naïve', { delay: 15 }),
    bob.keyboard.type('Bob 🎉👩‍💻 too ', { delay: 15 }),
  ]);
  const expected = 'Bob 🎉👩‍💻 too [] Ann was here 😀 naïve';
  await eventually('both pages to converge', async () => (await textOf(ann)) === expected && (await textOf(bob)) === expected);
  assert.equal(await serverText(), expected, 'the pages show exactly what the server has');

  // Each sees the other's caret with their name.
  await putCaret(bob, 3);
  await putCaret(ann, 'end');
  await eventually("Bob's caret on Ann's page", async () => (await ann.locator('.chorus-caret[data-user="Bob"]').count()) === 1);
  await eventually("Ann's caret on Bob's page", async () => (await bob.locator('.chorus-caret[data-user="Ann"]').count()) === 1);
  assert.match(await ann.locator('.chorus-caret[data-user="Bob"]').textContent(), /Bob/);
  await ann.screenshot({ path: path.join(shots, 'two-users-ann.png') });
  await bob.screenshot({ path: path.join(shots, 'two-users-bob.png') });

  // Bob goes offline, keeps typing, and comes back.
  relay.offline();
  await eventually('Bob to notice he is offline', async () => (await bob.locator('[data-testid=state]').textContent()).trim() !== 'connected');
  await putCaret(bob, 0);
  await bob.keyboard.type('offline ✈️ ', { delay: 10 });
  // Past the 500 ms capture window, so this is an undo step of its own.
  await new Promise((r) => setTimeout(r, 700));
  await putCaret(ann, 'end');
  await ann.keyboard.type(' meanwhile', { delay: 10 });
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(!(await textOf(ann)).includes('offline'), "Bob's offline edit has not reached Ann yet");
  await bob.screenshot({ path: path.join(shots, 'bob-offline.png') });
  relay.online();
  const final = 'offline ✈️ ' + expected + ' meanwhile';
  await eventually('both pages after Bob is back', async () => (await textOf(ann)) === final && (await textOf(bob)) === final, 20_000, async () => `Ann has ${JSON.stringify(await textOf(ann))}, Bob ${JSON.stringify(await textOf(bob))}`);
  const server = await serverText();
  assert.equal(server, final);
  assert.equal(server.split('offline ✈️').length - 1, 1, "Bob's offline edit arrived once");
  await ann.screenshot({ path: path.join(shots, 'after-reconnect-ann.png') });

  // Shared values: a title and a tag set on one page show on the other, and
  // both pages counted as views.
  await ann.locator('[data-testid=title]').fill('Launch plan');
  await ann.locator('[data-testid=title]').press('Enter');
  await ann.locator('[data-testid=tag-input]').fill('draft');
  await ann.locator('[data-testid=tag-input]').press('Enter');
  await eventually('the title on Bob\'s page', async () => (await bob.locator('[data-testid=title]').inputValue()) === 'Launch plan');
  await eventually('the tag on Bob\'s page', async () => (await bob.locator('.tag[data-tag="draft"]').count()) === 1);
  assert.ok(Number(await bob.locator('[data-testid=views]').getAttribute('data-count')) >= 2);

  // Ctrl-Z on Ann's page takes back her own last step, and only hers.
  await editor(ann).focus();
  await ann.keyboard.press('Control+z');
  const undone = 'offline ✈️ ' + expected;
  const texts = async () => `Ann has ${JSON.stringify(await textOf(ann))}, Bob ${JSON.stringify(await textOf(bob))}, the server ${JSON.stringify(await serverText())}`;
  await eventually('Ann\'s undo on both pages', async () => (await textOf(ann)) === undone && (await textOf(bob)) === undone, 10_000, texts);
  assert.equal(await serverText(), undone);
  await putCaret(bob, 4);
  await putCaret(ann, 'end');
  await eventually("Bob's caret after the undo", async () => (await ann.locator('.chorus-caret[data-user="Bob"]').count()) === 1);
  await ann.screenshot({ path: path.join(shots, 'demo.png') });
});

test('two tabs of one browser are two users, unless ?name= makes them one', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const tabRoom = `tabs-${Date.now().toString(36)}`;
  const tab = async (query) => {
    const page = await context.newPage();
    await page.goto(`${chorus.base}/?room=${tabRoom}${query}`);
    await eventually('the tab to connect', async () => (await page.locator('[data-testid=state]').textContent()).trim() === 'connected');
    return page;
  };
  const one = await tab('');
  const two = await tab('');
  const me = (page) => page.locator('#me-name').textContent();
  assert.notEqual(await me(one), await me(two), 'each tab named itself');
  await eventually('both tabs in the member list', async () => (await one.locator('[data-testid=members] .avatar').count()) === 2);
  const labels = await one.locator('[data-testid=members] .avatar').evaluateAll((els) => els.map((e) => e.title));
  assert.ok(!labels.some((l) => l.includes('you, in another tab')), `two users, not one: ${labels}`);
  // Each tab sees the other's caret under the other's name, not its own.
  await editor(two).focus();
  await two.keyboard.type('from tab two');
  const otherName = await me(two);
  await eventually("tab two's caret on tab one", async () => (await one.locator(`.chorus-caret[data-user="${otherName}"]`).count()) === 1);
  // A reload keeps the tab's identity.
  await two.reload();
  await eventually('tab two back', async () => (await two.locator('[data-testid=state]').textContent()).trim() === 'connected');
  assert.equal(await me(two), otherName);
  // Two tabs given the same ?name= are one user.
  const zed1 = await tab('&name=Zed');
  const zed2 = await tab('&name=Zed');
  await eventually('Zed twice', async () => (await zed1.locator('[data-testid=members] .avatar[title*="you, in another tab"]').count()) === 1);
  await context.close();
});

test('the badge says "saving…" while edits wait for the server, and the page drops values the server lost', async () => {
  const own = await startChorus();
  try {
    const valuesRoom = `restart-${Date.now().toString(36)}`;
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${own.base}/?room=${valuesRoom}&name=Ann`);
    const badge = page.locator('[data-testid=state]');
    await eventually('connected', async () => (await badge.textContent()).trim() === 'connected');
    await page.locator('[data-testid=title]').fill('Launch plan');
    await page.locator('[data-testid=title]').press('Enter');
    await editor(page).focus();
    await page.keyboard.type('saved');
    await eventually('saved', async () => (await fetch(`${own.base}/v1/rooms/${valuesRoom}/docs/body`).then((r) => r.json())).text === 'saved');

    // The server stops answering (its socket stays open): the edit is not saved.
    own.pause();
    await page.keyboard.type(' waiting');
    await eventually('"saving…"', async () => (await badge.textContent()).trim() === 'saving…');
    await eventually('"not saved yet"', async () => (await badge.textContent()).trim() === 'not saved yet', 8000);
    own.resume();
    await eventually('connected again', async () => (await badge.textContent()).trim() === 'connected', 10_000);

    // A restart of the in-memory server loses the title: the page stops showing it.
    const port = own.port;
    await own.stop();
    const again = await startChorus({ port });
    Object.assign(own, again);
    await eventually('the title gone', async () => (await page.locator('[data-testid=title]').inputValue()) === '', 15_000);
    assert.equal(await page.locator('[data-testid=views]').getAttribute('data-count'), '0');
    await page.context().close();
  } finally {
    await own.stop();
  }
});
