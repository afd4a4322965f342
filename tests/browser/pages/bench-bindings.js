// The bindings' own cost per change, in the browser: a CodeMirror editor
// (@chorus/codemirror) and a <textarea> (@chorus/textarea) bound to a
// TextDoc driven directly, with a stand-in room and client that send
// nothing, as clients/js/bench/textdoc.js drives it. Bundled by
// tests/browser/bench-bindings.mjs, which runs `window.bench` and prints
// the figures.

import { TextDoc } from '@chorus/client';
import { chorus } from '@chorus/codemirror';
import { bindTextarea } from '@chorus/textarea';
import { EditorView } from '@codemirror/view';

/** A deterministic PRNG (mulberry32). */
function prng(seed) {
  let state = seed >>> 0;
  return (n) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** About `units` UTF-16 units of prose with accents, lines broken by `lineBreak`. */
function prose(units, lineBreak) {
  const words = ['chorus', 'édition', 'text', 'naïve', 'op', 'cursor', 'Ωmega', 'room'];
  const rand = prng(7);
  const parts = [];
  let n = 0;
  while (n < units) {
    const w = rand(12) === 0 ? lineBreak : words[rand(words.length)] + ' ';
    parts.push(w);
    n += w.length;
  }
  return parts.join('');
}

/** A TextDoc opened on `text`, with a stand-in room and client that send nothing, and 4 remote carets. */
function openDoc(text) {
  const client = {
    session: { limits: { max_document_bytes: 64 << 20, max_op_bytes: 1 << 20, max_message_bytes: 2 << 20 } },
    user: { id: 'me' },
    state: 'open',
    _takeId: () => 1,
    _register() {},
    _send() {},
    _pendingChanged() {},
  };
  const room = { name: 'bench', client, cursors: new Map(), _live: true, setCursor() {}, _forgetDoc() {}, _rejoin() {} };
  const doc = new TextDoc(room, 'doc');
  doc._onOpened({ type: 'opened', text, version: 0, epoch: 'bench', client: 'u2:me:x' });
  for (let i = 0; i < 4; i++) {
    room.cursors.set(`c${i}`, { connection: `c${i}`, user: { id: `u${i}`, name: `U${i}`, color: '#c2255c' }, doc: 'doc', version: 0, cursor: { anchor: 0, head: 0 } });
  }
  return doc;
}

const ack = (doc) => doc._onAck({ type: 'ack', seq: doc._inflight.seq, version: doc.version + 1 });

/**
 * One bound editor on `text`: `local(i)` makes keystroke i (a 'q' typed at a
 * place, then taken out again, each acknowledged), `remote(i)` applies
 * another's op i (the same, at a code point).
 */
function setup(kind, text) {
  const doc = openDoc(text);
  const parent = document.getElementById('bench');
  parent.replaceChildren();
  const rand = prng(42);
  let local;
  let destroy;
  let length;
  if (kind === 'codemirror') {
    const view = new EditorView({ parent, doc: doc.text, extensions: [chorus(doc)] });
    length = view.state.doc.length;
    local = (at, insert) => view.dispatch({ changes: insert ? { from: at, insert: 'q' } : { from: at, to: at + 1 } });
    destroy = () => view.destroy();
  } else {
    const field = document.createElement('textarea');
    field.style.cssText = 'width: 600px; height: 400px';
    parent.append(field);
    const binding = bindTextarea(field, doc);
    length = field.value.length;
    local = (at, insert) => {
      field.setRangeText(insert ? 'q' : '', at, insert ? at : at + 1, 'end');
      field.dispatchEvent(new InputEvent('input', { inputType: insert ? 'insertText' : 'deleteContentForward' }));
    };
    destroy = () => binding.destroy();
  }
  const places = Array.from({ length: 4096 }, () => rand(length));
  const points = Array.from({ length: 4096 }, () => rand(doc._rope.codePoints));
  let version = 0;
  return {
    local(i) {
      local(places[(i >> 1) & 4095], i % 2 === 0);
      ack(doc);
    },
    remote(i) {
      const at = points[(i >> 1) & 4095];
      const op = i % 2 === 0 ? (at > 0 ? [at, 'q'] : ['q']) : at > 0 ? [at, { d: 1 }] : [{ d: 1 }];
      version = doc.version + 1;
      doc._onOp({ type: 'op', version, client: 'u5:other:y', seq: version, op });
    },
    check: () => doc.text === text,
    destroy,
  };
}

/** The mean time (µs) of `batch` steps from `from`, with the events they queued delivered. */
async function round(step, batch, from) {
  const start = performance.now();
  for (let i = from; i < from + batch; i++) step(i);
  await null;
  return ((performance.now() - start) * 1000) / batch;
}

/**
 * Medians over `rounds` of the mean time per step of every case on an empty
 * text and on one of `size` units ("\n" lines, and "\r\n" lines for
 * CodeMirror, which maps those); texts take turns round by round.
 */
window.bench = async ({ size, rounds, batch, editors = ['codemirror', 'textarea'] }) => {
  const texts = { empty: '', large: prose(size, '\n'), 'large, CRLF': prose(size, '\r\n') };
  const rows = [];
  for (const kind of editors) {
    for (const what of ['local', 'remote']) {
      const on = kind === 'codemirror' ? ['empty', 'large', 'large, CRLF'] : ['empty', 'large'];
      const times = on.map(() => []);
      // One editor at a time, set up afresh for each round (untimed).
      for (let r = 0; r <= rounds; r++) {
        for (let t = 0; t < on.length; t++) {
          const b = setup(kind, texts[on[t]]);
          const us = await round(b[what], batch, r * batch);
          if (!b.check()) throw new Error(`${kind} ${what} on ${on[t]}: the text changed`);
          b.destroy();
          if (r > 0) times[t].push(us);
        }
      }
      const medians = times.map((ts) => ts.sort((a, b) => a - b)[ts.length >> 1]);
      rows.push({ kind, what, medians: Object.fromEntries(on.map((t, i) => [t, medians[i]])) });
    }
  }
  return { size: texts.large.length, rows };
};
document.documentElement.dataset.ready = 'true';
