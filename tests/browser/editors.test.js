// The editor bindings in a real headless Chromium against a real `chorus
// serve`: two CodeMirror pages (@chorus/codemirror, on a page built with
// esbuild from tests/browser/pages) and two textarea pages (the demo page,
// built on @chorus/textarea and served by the server itself from /sdk/)
// edit one document with seeded random keyboard sessions at once, and end
// with the server's text; each shows the others' carets with their names;
// Ctrl-Z takes back only the pressing user's edits; a page cut off by a TCP
// relay catches up; a document with "\r\n" line breaks edits correctly; a
// remote change is one editor transaction and never echoes; carets carry
// their member's colour, and a label on the first line is never cut off;
// pages with no build step bind a textarea, an <input> and CodeMirror from
// the server's /sdk/.
//
// Replay a run with SEED=<n>. Screenshots go to target/browser-screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { buildPage, eventually, launchChromium, prng, repo, seeded, servePages, startChorus, startRelay } from './support.js';

const shots = path.join(repo, 'target/browser-screenshots');
let chorus, relay, pages, browser;

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  const built = await buildPage('codemirror', 'codemirror.js');
  chorus = await startChorus();
  relay = await startRelay(chorus.port);
  pages = await servePages(built);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  pages?.close();
  relay?.close();
  await chorus?.stop();
});

const roomName = (prefix) => `${prefix}-${Date.now().toString(36)}`;
const wsOf = (base) => base.replace(/^http/, 'ws') + '/v1/ws';

async function serverText(room, doc = 'body') {
  const res = await fetch(`${chorus.base}/v1/rooms/${encodeURIComponent(room)}/docs/${doc}`);
  assert.equal(res.status, 200);
  return (await res.json()).text;
}

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.error(`[${name}] console ${m.type()}: ${m.text()}`);
  });
  return page;
}

/** A CodeMirror page for `name`, connected through `base` (the server or the relay). */
async function codemirrorPage(room, name, base = chorus.base) {
  const page = await newPage(name);
  await page.goto(`${pages.base}/codemirror.html?ws=${encodeURIComponent(wsOf(base))}&room=${room}&name=${name}`);
  await eventually(`${name}'s editor`, () => page.evaluate(() => document.documentElement.dataset.ready === 'true'));
  const editor = {
    page,
    name,
    text: () => page.evaluate(() => window.chorusPage.text()),
    docText: () => page.evaluate(() => window.chorusPage.doc.text),
    focus: () => page.locator('.cm-content').focus(),
    carets: () => page.locator('.cm-chorus-caret').evaluateAll((els) => els.map((e) => e.dataset.user)),
  };
  return editor;
}

/** A demo page (the textarea binding) for `name`. */
async function textareaPage(room, name, base = chorus.base) {
  const page = await newPage(name);
  await page.goto(`${base}/?room=${room}&name=${name}`);
  await eventually(`${name} to connect`, async () => (await page.locator('[data-testid=state]').textContent()).trim() === 'connected');
  await eventually(`${name}'s document`, async () => !(await page.locator('[data-testid=editor]').getAttribute('readonly') !== null));
  const field = page.locator('[data-testid=editor]');
  return {
    page,
    name,
    text: () => field.inputValue(),
    focus: () => field.focus(),
    carets: () => page.locator('.chorus-caret').evaluateAll((els) => els.map((e) => e.dataset.user)),
  };
}

/** Puts a textarea page's caret right before the first `text` in its field. */
async function caretBefore(editor, text) {
  await editor.focus();
  await editor.page.locator('[data-testid=editor]').evaluate((el, text) => {
    const at = el.value.indexOf(text);
    el.setSelectionRange(at, at);
    el.dispatchEvent(new Event('select'));
  }, text);
}

const PIECES = ['a', 'b', 'c', 'd', ' ', 'é', 'ñ', 'ü', 'e\u0301', '😀', '🎉', '👩‍💻', 'ß', 'x'];

/** One page's seeded random keyboard session. */
async function keyboardSession(editor, rand, steps) {
  const { keyboard } = editor.page;
  await editor.focus();
  for (let i = 0; i < steps; i++) {
    const r = rand();
    if (r < 0.34) {
      let s = '';
      for (let n = 1 + rand.int(4); n > 0; n--) s += rand.pick(PIECES);
      await keyboard.type(s);
    } else if (r < 0.48) {
      await keyboard.press(rand.pick(['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown']));
    } else if (r < 0.56) {
      await keyboard.press(rand.pick(['Home', 'End']));
    } else if (r < 0.68) {
      await keyboard.press('Backspace');
    } else if (r < 0.76) {
      await keyboard.press('Delete');
    } else if (r < 0.83) {
      await keyboard.press('Enter');
    } else {
      // Select a few characters and type over them.
      const key = rand() < 0.5 ? 'Shift+ArrowLeft' : 'Shift+ArrowRight';
      for (let n = 1 + rand.int(4); n > 0; n--) await keyboard.press(key);
      await keyboard.type(rand.pick(PIECES) + rand.pick(['é', '😀', 'ç', '🎉']));
    }
    if (rand() < 0.3) await new Promise((r) => setTimeout(r, rand.int(40)));
  }
}

/**
 * Waits until every editor and the server have the same text (`expected`,
 * if given); says who had what otherwise. Returns the text.
 */
async function converged(room, editors, what, expected = null, ms = 20_000) {
  const state = async () => {
    const texts = await Promise.all(editors.map((e) => e.text()));
    return editors.map((e, i) => `${e.name}: ${JSON.stringify(texts[i])}`).join('; ') + `; server: ${JSON.stringify(await serverText(room))}`;
  };
  await eventually(
    what,
    async () => {
      const server = await serverText(room);
      if (expected !== null && server !== expected) return false;
      const texts = await Promise.all(editors.map((e) => e.text()));
      return texts.every((t) => t === server);
    },
    ms,
    state,
  );
  return serverText(room);
}

test('two CodeMirror pages and two textarea pages type at random at once and end with the server text', async () => {
  const room = roomName('random');
  const ann = await codemirrorPage(room, 'Ann');
  const bob = await codemirrorPage(room, 'Bob');
  const cat = await textareaPage(room, 'Cat');
  const dan = await textareaPage(room, 'Dan');
  const editors = [ann, bob, cat, dan];
  // Some text to move around in first.
  await ann.focus();
  await ann.page.keyboard.type('The quick brown fox\njumps over\nthe lazy dog.');
  await converged(room, editors, 'the first lines everywhere');

  const rand = seeded('keyboard sessions');
  const seeds = editors.map(() => rand.int(2 ** 31));
  const steps = Number(process.env.STEPS) || 60;
  // Each page its own stream, derived from the one printed seed.
  await Promise.all(editors.map((e, i) => keyboardSession(e, prng(seeds[i]), steps)));
  const text = await converged(room, editors, 'all four pages to agree with the server');
  assert.ok(text.length > 20, `the text grew: ${JSON.stringify(text)}`);
  assert.ok(text.isWellFormed(), 'no surrogate pair was split');
  // Each CodeMirror page's document (the SDK's text) is its editor's text.
  assert.equal(await ann.docText(), text);

  // Every page shows the other three's carets with their names.
  for (const e of editors) {
    const others = editors.filter((o) => o !== e).map((o) => o.name).sort();
    await eventually(`${e.name} to show ${others.join(', ')}`, async () => JSON.stringify((await e.carets()).sort()) === JSON.stringify(others), 10_000, async () => `it shows ${await e.carets()}`);
  }
  await ann.page.screenshot({ path: path.join(shots, 'random-codemirror-ann.png') });
  await cat.page.screenshot({ path: path.join(shots, 'random-textarea-cat.png') });
  for (const e of editors) await e.page.context().close();
});

test('Ctrl-Z on a CodeMirror page takes back only that user\'s own edit', async () => {
  const room = roomName('undo');
  const ann = await codemirrorPage(room, 'Ann');
  const bob = await textareaPage(room, 'Bob');
  await ann.focus();
  await ann.page.keyboard.type('Ann wrote this.');
  await converged(room, [ann, bob], "Ann's sentence everywhere");
  // Past the server's 500 ms step window, so Bob's typing is not in Ann's step anyway.
  await new Promise((r) => setTimeout(r, 700));
  await bob.focus();
  await bob.page.keyboard.press('Control+End');
  await bob.page.keyboard.type(' Bob added this.');
  await converged(room, [ann, bob], "Bob's sentence everywhere");
  await ann.focus();
  await ann.page.keyboard.press('Control+z');
  await converged(room, [ann, bob], "Ann's undo everywhere", ' Bob added this.');
  // The caret is where the undo acted.
  assert.equal(await ann.page.evaluate(() => window.chorusPage.view.state.selection.main.head), 0);
  // Ctrl-Shift-Z puts it back.
  await ann.page.keyboard.press('Control+Shift+KeyZ'); // a keyboard's Shift gives "Z"
  await converged(room, [ann, bob], "Ann's redo everywhere", 'Ann wrote this. Bob added this.');
  // Bob's Ctrl-Z takes back his, not Ann's.
  await bob.focus();
  await bob.page.keyboard.press('Control+z');
  await converged(room, [ann, bob], "Bob's undo everywhere", 'Ann wrote this.');
  // And nothing the editor kept of its own history can bring Ann's text back
  // out of step: the server has what both pages show.
  assert.equal(await ann.text(), 'Ann wrote this.');
  // Ctrl-Y is redo too.
  await ann.focus();
  await ann.page.keyboard.press('Control+z');
  await converged(room, [ann, bob], "Ann's second undo everywhere", '');
  await ann.page.keyboard.press('Control+y');
  await converged(room, [ann, bob], "Ann's redo by Ctrl-Y everywhere", 'Ann wrote this.');
  for (const e of [ann, bob]) await e.page.context().close();
});

/**
 * Where `name`'s caret is drawn on `page`: whether it is there, its label
 * hangs below it, its colour, and whether the label lies wholly inside the
 * box that clips it (`clip`, a selector).
 */
function caretOf(page, name, clip) {
  return page.evaluate(
    ([name, clip]) => {
      const caret = [...document.querySelectorAll('.cm-chorus-caret, .chorus-caret')].find((c) => c.dataset.user === name);
      if (!caret) return { shown: false };
      const label = caret.firstElementChild.getBoundingClientRect();
      const box = document.querySelector(clip).getBoundingClientRect();
      return {
        shown: true,
        below: /caret-below/.test(caret.className),
        color: caret.style.getPropertyValue('--chorus-user-color'),
        inside: label.height > 0 && label.top >= box.top && label.bottom <= box.bottom && label.left >= box.left && label.right <= box.right,
      };
    },
    [name, clip],
  );
}

test('a remote change is one CodeMirror transaction, never sent back; carets show name and colour, their labels never cut off at the first line', async () => {
  const room = roomName('carets');
  const ann = await codemirrorPage(room, 'Ann');
  const bob = await codemirrorPage(room, 'Bob');
  const cat = await textareaPage(room, 'Cat');
  await ann.focus();
  await ann.page.keyboard.type('one two three\nfour five');
  await converged(room, [ann, bob, cat], 'the first lines');
  const version = async () => (await (await fetch(`${chorus.base}/v1/rooms/${room}/docs/body`)).json()).version;
  const counts = () => bob.page.evaluate(() => ({ ...window.chorusPage.counts }));
  const versionBefore = await version();
  const bobBefore = await counts();
  // One transaction on Ann's page replacing two ranges is one op, which
  // reaches Bob's editor as one transaction.
  await ann.page.evaluate(() =>
    window.chorusPage.view.dispatch({
      changes: [
        { from: 0, to: 3, insert: 'ONE' },
        { from: 8, to: 13, insert: 'THREE 🎉' },
      ],
    }),
  );
  await converged(room, [ann, bob, cat], 'the two replacements', 'ONE two THREE 🎉\nfour five');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await version(), versionBefore + 1, 'one op, and nobody sent it back');
  const bobAfter = await counts();
  assert.equal(bobAfter.remoteTransactions - bobBefore.remoteTransactions, 1, "one transaction on Bob's page");
  assert.equal(bobAfter.localChanges, bobBefore.localChanges, "Bob's page made no edit of its own");

  // Bob's caret on the first line: on Ann's page and on Cat's, with his name
  // and colour, its label below the caret and wholly visible.
  const bobColor = await ann.page.evaluate(() => window.chorusPage.room.members.find((m) => m.user.name === 'Bob').user.color);
  assert.ok(bobColor, 'Bob has a colour');
  await bob.page.evaluate(() => {
    window.chorusPage.view.dispatch({ selection: { anchor: 2 } });
    window.chorusPage.view.focus();
  });
  const onFirstLine = { shown: true, below: true, color: bobColor, inside: true };
  await eventually("Bob's first-line caret on Ann's page", async () => JSON.stringify(await caretOf(ann.page, 'Bob', '.cm-scroller')) === JSON.stringify(onFirstLine), 10_000, async () => JSON.stringify(await caretOf(ann.page, 'Bob', '.cm-scroller')));
  await eventually("Bob's first-line caret on Cat's page", async () => {
    const c = await caretOf(cat.page, 'Bob', '.chorus-overlay');
    return c.shown && c.color === bobColor && c.inside;
  }, 10_000, async () => JSON.stringify(await caretOf(cat.page, 'Bob', '.chorus-overlay')));
  // On the second line the label sits above the caret, still wholly visible.
  await bob.page.evaluate(() => window.chorusPage.view.dispatch({ selection: { anchor: window.chorusPage.view.state.doc.line(2).from + 2 } }));
  const onSecondLine = { shown: true, below: false, color: bobColor, inside: true };
  await eventually("Bob's second-line caret on Ann's page", async () => JSON.stringify(await caretOf(ann.page, 'Bob', '.cm-scroller')) === JSON.stringify(onSecondLine), 10_000, async () => JSON.stringify(await caretOf(ann.page, 'Bob', '.cm-scroller')));
  for (const e of [ann, bob, cat]) await e.page.context().close();
});

test('a CodeMirror page cut off by the network keeps its edits and catches up', async () => {
  const room = roomName('offline');
  const ann = await codemirrorPage(room, 'Ann');
  const bob = await codemirrorPage(room, 'Bob', relay.base);
  await ann.focus();
  await ann.page.keyboard.type('shared line');
  await converged(room, [ann, bob], 'the first line');
  relay.offline();
  await eventually("Bob's page to notice", () => bob.page.evaluate(() => window.chorusPage.client.state !== 'open'));
  await bob.focus();
  await bob.page.keyboard.press('Control+Home');
  await bob.page.keyboard.type('offline ✈️ ');
  await ann.focus();
  await ann.page.keyboard.press('Control+End');
  await ann.page.keyboard.type(' meanwhile');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await ann.text(), 'shared line meanwhile', "Bob's edit has not reached Ann");
  assert.equal(await bob.text(), 'offline ✈️ shared line', "Ann's edit has not reached Bob");
  relay.online();
  await converged(room, [ann, bob], 'both pages after Bob is back', 'offline ✈️ shared line meanwhile');
  for (const e of [ann, bob]) await e.page.context().close();
});

test('a document with "\\r\\n" line breaks edits correctly in CodeMirror and a textarea', async () => {
  const room = roomName('crlf');
  const seed = 'line one\r\nline two\r\nline three\r\n';
  const res = await fetch(`${chorus.base}/v1/rooms/${room}/docs/body/ops`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ op: { insert: { at: 0, text: seed } } }),
  });
  assert.equal(res.status, 200, await res.text());
  const ann = await codemirrorPage(room, 'Ann');
  const cat = await textareaPage(room, 'Cat');
  const shown = (t) => t.replace(/\r\n/g, '\n');
  assert.equal(await ann.text(), shown(seed), 'CodeMirror shows the lines');
  assert.equal(await cat.text(), shown(seed), 'so does the textarea');

  // In CodeMirror: the end of line two, some words, a new line.
  await ann.focus();
  await ann.page.keyboard.press('Control+Home');
  await ann.page.keyboard.press('ArrowDown');
  await ann.page.keyboard.press('End');
  await ann.page.keyboard.type(' (edited)');
  await ann.page.keyboard.press('Enter');
  await ann.page.keyboard.type('new line');
  let expected = 'line one\r\nline two (edited)\r\nnew line\r\nline three\r\n';
  const check = async (what) => {
    await eventually(what, async () => (await serverText(room)) === expected && (await ann.text()) === shown(expected) && (await cat.text()) === shown(expected), 10_000, async () =>
      `server ${JSON.stringify(await serverText(room))}, Ann ${JSON.stringify(await ann.text())}, Cat ${JSON.stringify(await cat.text())}`);
  };
  await check('the CodeMirror edit, with "\\r\\n" for the new line');

  // In the textarea: the start of the new line.
  await caretBefore(cat, 'new line');
  await cat.page.keyboard.type('>> ');
  expected = 'line one\r\nline two (edited)\r\n>> new line\r\nline three\r\n';
  await check('the textarea edit');

  // Joining two lines deletes the whole "\r\n"; splitting one makes a new one.
  await ann.focus();
  await ann.page.keyboard.press('Control+End');
  await ann.page.keyboard.press('ArrowUp');
  await ann.page.keyboard.press('Home');
  await ann.page.keyboard.press('Backspace');
  expected = 'line one\r\nline two (edited)\r\n>> new lineline three\r\n';
  await check('a line break deleted in CodeMirror');
  await caretBefore(cat, 'line three');
  await cat.page.keyboard.press('Enter');
  expected = 'line one\r\nline two (edited)\r\n>> new line\r\nline three\r\n';
  await check('a line break typed in the textarea');
  for (const e of [ann, cat]) await e.page.context().close();
});

test('screenshots: the CodeMirror page with two users', async () => {
  const room = roomName('launch-notes');
  const ann = await codemirrorPage(room, 'Ann');
  const bob = await codemirrorPage(room, 'Bob');
  await ann.focus();
  const text = [
    '# Launch plan',
    '',
    'Goals for the week:',
    '- ship the editor bindings 🎉',
    '- write the release notes',
    '- answer the café owners about offline mode',
    '',
    'Everyone sees everyone else\'s caret and selection, live.',
  ].join('\n');
  await ann.page.keyboard.insertText(text);
  await converged(room, [ann, bob], 'the notes on both pages');
  // Bob selects "release notes"; Ann's caret rests after "bindings".
  await bob.page.evaluate(() => {
    const { view } = window.chorusPage;
    const at = view.state.doc.toString().indexOf('release notes');
    view.dispatch({ selection: { anchor: at, head: at + 'release notes'.length } });
    view.focus();
  });
  await ann.page.evaluate(() => {
    const { view } = window.chorusPage;
    const at = view.state.doc.toString().indexOf(' 🎉');
    view.dispatch({ selection: { anchor: at } });
    view.focus();
  });
  await eventually("Bob's selection on Ann's page", async () => (await ann.page.locator('.cm-chorus-selection').count()) > 0);
  await eventually("Ann's caret on Bob's page", async () => (await bob.carets()).includes('Ann'));
  assert.deepEqual(await ann.carets(), ['Bob']);
  await ann.page.screenshot({ path: path.join(shots, 'codemirror-ann.png') });
  await bob.page.screenshot({ path: path.join(shots, 'codemirror-bob.png') });
  for (const e of [ann, bob]) await e.page.context().close();
});

test('with no build step: an <input> and a <textarea> bound from the server\'s /sdk/ on a page of another origin', async () => {
  const room = roomName('nobuild');
  // The page imports the packages from the server through an import map.
  const html = fs.readFileSync(path.join(repo, 'tests/browser/pages/nobuild.html'), 'utf8').replaceAll('CHORUS', chorus.base);
  fs.writeFileSync(path.join(repo, 'target/browser-pages/nobuild.html'), html);
  const res = await fetch(`${chorus.base}/v1/rooms/${room}/docs/title/ops`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ op: { insert: { at: 0, text: 'Plan\r\nfor Q3' } } }),
  });
  assert.equal(res.status, 200, await res.text());
  const open = async (name) => {
    const page = await newPage(name);
    await page.goto(`${pages.base}/nobuild.html?room=${room}&name=${name}`);
    await eventually(`${name}'s page`, () => page.evaluate(() => document.documentElement.dataset.ready === 'true'));
    return page;
  };
  const ann = await open('Ann');
  const bob = await open('Bob');
  // An <input> holds one line: the document's line break shows as a space
  // and stays a line break in the document when the line is edited.
  const title = (page) => page.locator('#title').inputValue();
  assert.equal(await title(ann), 'Plan for Q3');
  await ann.locator('#title').focus();
  await ann.keyboard.press('End');
  await ann.keyboard.type(' 🎉');
  await eventually("Ann's title on Bob's page", async () => (await title(bob)) === 'Plan for Q3 🎉');
  assert.equal(await serverText(room, 'title'), 'Plan\r\nfor Q3 🎉');
  // The textarea: typing on both pages, carets with names.
  await bob.locator('#notes').focus();
  await bob.keyboard.type('Notes from Bob.');
  await eventually("Bob's notes on Ann's page", async () => (await ann.locator('#notes').inputValue()) === 'Notes from Bob.');
  await eventually("Bob's caret on Ann's page", async () => (await ann.locator('.chorus-caret[data-user="Bob"]').count()) === 1);
  // On the first line of a field with little padding, its label hangs below
  // the caret, wholly inside the field.
  await eventually("Bob's label inside Ann's field", async () => {
    const c = await caretOf(ann, 'Bob', '#notes + .chorus-overlay');
    return c.shown && c.below && c.inside;
  }, 10_000, async () => JSON.stringify(await caretOf(ann, 'Bob', '#notes + .chorus-overlay')));
  for (const page of [ann, bob]) await page.context().close();
});

test('with no build step: CodeMirror editors bound from the server\'s /sdk/ on a page of another origin', async () => {
  const room = roomName('nobuild-cm');
  const html = fs.readFileSync(path.join(repo, 'tests/browser/pages/nobuild-codemirror.html'), 'utf8').replaceAll('CHORUS', chorus.base);
  fs.writeFileSync(path.join(repo, 'target/browser-pages/nobuild-codemirror.html'), html);
  // CodeMirror's ES modules as the page's import map names them: the npm
  // packages' own files, unbundled.
  const files = ['@codemirror/state/dist/index.js', '@codemirror/view/dist/index.js', '@marijn/find-cluster-break/src/index.js', 'style-mod/src/style-mod.js', 'w3c-keyname/index.js', 'crelt/index.js'];
  for (const f of files) {
    const to = path.join(repo, 'target/browser-pages/vendor', f);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(path.join(repo, 'tests/browser/node_modules', f), to);
  }
  const open = async (name) => {
    const page = await newPage(name);
    await page.goto(`${pages.base}/nobuild-codemirror.html?room=${room}&name=${name}`);
    await eventually(`${name}'s page`, () => page.evaluate(() => document.documentElement.dataset.ready === 'true'));
    return { page, name, text: () => page.evaluate(() => window.chorusPage.text()), focus: () => page.locator('.cm-content').focus() };
  };
  const ann = await open('Ann');
  const bob = await open('Bob');
  await ann.focus();
  await ann.page.keyboard.type('typed with no build step 🎉');
  await converged(room, [ann, bob], "Ann's line on both pages", 'typed with no build step 🎉');
  await eventually("Ann's caret on Bob's page", async () => (await bob.page.locator('.cm-chorus-caret[data-user="Ann"]').count()) === 1);
  for (const e of [ann, bob]) await e.page.context().close();
});
