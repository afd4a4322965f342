// Editors count every line break as one position and read "\r\n", "\r" and
// "\n" alike (CodeMirror's lines, a textarea's value); a Chorus document
// keeps "\r\n" as two UTF-16 units. Random edits from both sides, on texts
// full of "\r", "\n" and "\r\n", must leave the editor's text equal to the
// document's text with its line breaks normalised.

import assert from 'node:assert/strict';
import { applyChanges, chorusChanges, editorChanges, lineMapping, normalizeLineBreaks } from '../src/chorus.js';
import { seeded, test } from './helpers.js';

/** Applies changes the way an editor does: each insert's own line breaks become "\n". */
const editorApply = (text, changes) => applyChanges(text, changes.map((c) => ({ ...c, insert: normalizeLineBreaks(c.insert) })));

test('positions map both ways around "\\r\\n" pairs', () => {
  const text = 'ab\r\ncd\r\n\r\nx\ry\n';
  const m = lineMapping(text);
  assert.equal(normalizeLineBreaks(text), 'ab\ncd\n\nx\ny\n');
  assert.deepEqual(m.pairs, [2, 6, 8]);
  assert.equal(m.lineBreak, '\r\n');
  const editor = normalizeLineBreaks(text);
  for (let p = 0; p <= editor.length; p++) {
    const c = m.toChorus(p);
    assert.equal(m.toEditor(c), p, `position ${p}`);
    assert.equal(normalizeLineBreaks(text.slice(0, c)), editor.slice(0, p), `the text before ${p} is the same`);
  }
  assert.equal(m.toEditor(3), 2, 'between "\\r" and "\\n": the line break');
  const plain = lineMapping('no breaks\nhere');
  assert.equal(plain.identity, true);
  assert.equal(plain.lineBreak, '\n');
});

test('random edits from both sides keep the editor and the document in step', () => {
  const random = seeded('line breaks');
  const rand = (n) => random.int(n);
  const pieces = ['a', 'é', '😀', '\r', '\n', '\r\n', 'x'];
  let text = 'one\r\ntwo\r\n';
  for (let round = 0; round < 20000; round++) {
    const editor = normalizeLineBreaks(text);
    const mapping = lineMapping(text);
    if (rand(2) === 0) {
      // A remote change of the document, into the editor.
      const changes = [];
      let pos = 0;
      for (let j = 0; j < 2; j++) {
        let from = pos + rand(3);
        if (from > text.length) break;
        if (text.charCodeAt(from - 1) >= 0xd800 && text.charCodeAt(from - 1) <= 0xdbff) from++;
        let to = Math.min(text.length, from + rand(3));
        if (text.charCodeAt(to - 1) >= 0xd800 && text.charCodeAt(to - 1) <= 0xdbff) to++;
        const insert = Array.from({ length: rand(3) }, () => pieces[rand(pieces.length)]).join('');
        if (to === from && !insert) continue;
        changes.push({ from, to, insert });
        pos = to + 1;
      }
      const after = editorApply(editor, editorChanges(text, changes, mapping));
      text = applyChanges(text, changes);
      assert.equal(after, normalizeLineBreaks(text), `remote ${JSON.stringify(changes)}`);
    } else {
      // A local change in the editor (inserted lines), into the document.
      const changes = [];
      let pos = 0;
      for (let j = 0; j < 2; j++) {
        let from = pos + rand(3);
        if (from > editor.length) break;
        if (editor.charCodeAt(from - 1) >= 0xd800 && editor.charCodeAt(from - 1) <= 0xdbff) from++;
        let to = Math.min(editor.length, from + rand(3));
        if (editor.charCodeAt(to - 1) >= 0xd800 && editor.charCodeAt(to - 1) <= 0xdbff) to++;
        const insert = Array.from({ length: rand(3) }, () => ['a', '\n', 'é'][rand(3)]).join('');
        if (to === from && !insert) continue;
        changes.push({ from, to, lines: insert.split('\n') });
        pos = to + 1;
      }
      const after = applyChanges(editor, changes.map((c) => ({ from: c.from, to: c.to, insert: c.lines.join('\n') })));
      const pairsBefore = mapping.pairs.length;
      text = applyChanges(text, chorusChanges(text, changes, mapping));
      assert.equal(normalizeLineBreaks(text), after, `local ${JSON.stringify(changes)}`);
      if (pairsBefore > 0 && changes.some((c) => c.lines.length > 1)) {
        assert.ok(text.includes('\r\n'), 'new lines in a "\\r\\n" document are "\\r\\n"');
      }
    }
    if (text.length > 40) text = text.slice(0, 12).replace(/[\ud800-\udbff]$/, '');
  }
});
