// @chorus/codemirror: binds a CodeMirror 6 editor to a Chorus text document.
//
//   import { chorus } from '@chorus/codemirror';
//   const doc = await room.openDoc('body');
//   new EditorView({ parent, doc: doc.text, extensions: [basicSetup, chorus(doc)] });
//
// One extension does it all: the editor's changes become edits of the
// document (one op per transaction), every remote change becomes one
// editor transaction annotated with `remoteChange` (so it is never sent
// back), other members' carets and selections are drawn with their names
// and colours, and Ctrl-Z / Ctrl-Shift-Z / Ctrl-Y go to the server's
// per-user undo, which takes back only this user's edits (the editor's own
// history is shadowed by that keymap for the bound document).
//
// What a change costs is what it changes: while the document has no "\r",
// the editor's text is the document's text, position for position, so
// changes pass between them as they are and the two are checked to be in
// step by their lengths (`doc.length`), never by building either text.
// Only a document with a "\r" (whose line breaks the editor normalises)
// has the binding keep `shadow`, the Chorus text the editor shows, and map
// positions through it (the SDK's lines.js); that costs a pass over the
// text per change, and stops when the last "\r" goes.

import { applyChanges, chorusChanges, diffText, editorChanges, lineMapping, normalizeLineBreaks } from '@chorus/client';
import { Annotation, Prec, Transaction } from '@codemirror/state';
import { EditorView, ViewPlugin, keymap } from '@codemirror/view';
import { caretPlugin, caretTheme, refreshCarets } from './carets.js';

export { refreshCarets } from './carets.js';

/** Marks the transactions that carry remote changes (and resyncs) into the editor. */
export const remoteChange = Annotation.define();

const IDENTITY = lineMapping('');
const insertsCR = (changes) => changes.some((c) => c.insert.indexOf('\r') >= 0);

/**
 * The extension binding an editor to `doc` (a TextDoc of @chorus/client).
 * Options: `carets` (default true) draws other members' carets and
 * selections; `undo` (default true) binds Mod-z, Mod-Shift-z and Mod-y to
 * the server's undo and redo; `onError(error)` hears about edits or undo
 * requests that failed (default: console.warn).
 */
export function chorus(doc, options = {}) {
  const { carets = true, undo = true, onError = (err) => console.warn('[chorus codemirror]', err) } = options;
  // `shadow` is null while the document has no "\r" (then `mapping` is the identity).
  const state = { view: null, shadow: null, mapping: IDENTITY, historyRequests: 0 };

  /** The document's text is now `text` (in full: on binding and resyncing). */
  const track = (text) => {
    const hasCR = text.indexOf('\r') >= 0;
    state.shadow = hasCR ? text : null;
    state.mapping = hasCR ? lineMapping(text) : IDENTITY;
  };
  track(doc.text);

  /** Whether the editor's text `editorDoc` and the document agree (by length: the check is free). */
  const inStep = (editorDoc) =>
    state.shadow === null
      ? doc.length === editorDoc.length
      : doc.length === state.shadow.length && editorDoc.length === state.shadow.length - state.mapping.pairs.length;

  /** Brings the editor to the document's text (a safety net; normally never needed). */
  const resync = (view) => {
    const text = doc.text;
    const current = view.state.doc.toString();
    track(text);
    const diff = diffText(current, normalizeLineBreaks(text));
    if (diff) view.dispatch({ changes: diff, annotations: [remoteChange.of(true), Transaction.addToHistory.of(false)] });
  };

  const runHistory = (kind) => {
    state.historyRequests++;
    (kind === 'undo' ? doc.undo() : doc.redo())
      .catch(onError)
      .finally(() => state.historyRequests--);
    return true;
  };

  const sync = ViewPlugin.fromClass(
    class {
      constructor(view) {
        state.view = view;
        this.view = view;
        track(doc.text);
        this.off = [
          doc.on('change', (e) => this.onChange(e)),
          doc.on('selections', () => this.view.dispatch({ effects: refreshCarets.of(null) })),
        ];
        // An editor created without `doc: doc.text` is brought to the
        // document's text once the view exists (not during its construction).
        if (view.state.doc.toString() !== normalizeLineBreaks(doc.text)) queueMicrotask(() => resync(view));
      }

      /** A change of the document: ours is already in the editor; another's goes in. */
      onChange(e) {
        if (!e.remote) return;
        const view = this.view;
        let changes;
        if (state.shadow === null && !insertsCR(e.changes)) {
          changes = e.changes.map(({ from, to, insert }) => ({ from, to, insert }));
        } else {
          // A "\r" arrives, or was there: positions are mapped through the
          // text before the change (without a "\r", the editor's own).
          const before = state.shadow === null ? view.state.doc.toString() : state.shadow;
          const mapping = state.shadow === null ? IDENTITY : state.mapping;
          changes = editorChanges(before, e.changes, mapping);
          track(applyChanges(before, e.changes));
        }
        const spec = {
          changes,
          annotations: [remoteChange.of(true), Transaction.addToHistory.of(false)],
        };
        if (e.undo && state.historyRequests > 0 && changes.length > 0) {
          // Our own undo or redo: the caret goes where it acted, as a local
          // undo would put it.
          let end = 0;
          view.state.changes(changes).iterChanges((fromA, toA, fromB, toB) => {
            end = toB;
          });
          spec.selection = { anchor: end };
          spec.scrollIntoView = true;
        }
        view.dispatch(spec);
        if (!inStep(view.state.doc)) resync(view);
      }

      update(update) {
        for (const tr of update.transactions) {
          if (!tr.docChanged || tr.annotation(remoteChange)) continue;
          const edits = [];
          tr.changes.iterChanges((fromA, toA, fromB, toB, inserted) => {
            edits.push({ from: fromA, to: toA, lines: inserted.toJSON() });
          });
          // Without a "\r" the editor's positions and lines are the document's.
          const changes =
            state.shadow === null
              ? edits.map(({ from, to, lines }) => ({ from, to, insert: lines.join('\n') }))
              : chorusChanges(state.shadow, edits, state.mapping);
          try {
            doc.change(changes);
            if (state.shadow !== null) track(applyChanges(state.shadow, changes));
          } catch (err) {
            // Refused (over the server's document limit, say): the editor
            // goes back to the document's text.
            onError(err);
            queueMicrotask(() => resync(this.view));
            return;
          }
        }
        if (!inStep(update.state.doc)) {
          queueMicrotask(() => resync(this.view));
          return;
        }
        const local = update.transactions.some((tr) => !tr.annotation(remoteChange) && (tr.docChanged || tr.selection));
        if (local) {
          const { anchor, head } = update.state.selection.main;
          try {
            doc.setSelection(state.mapping.toChorus(anchor), state.mapping.toChorus(head));
          } catch {
            // Not open (yet, or any more): nothing to show.
          }
        }
      }

      destroy() {
        for (const off of this.off) off();
        state.view = null;
      }
    },
  );

  const extensions = [sync];
  if (carets) {
    const selections = (view) =>
      !inStep(view.state.doc)
        ? []
        : doc.remoteSelections().map((s) => ({
            ...s,
            anchor: state.mapping.toEditor(s.anchor),
            head: state.mapping.toEditor(s.head),
          }));
    extensions.push(caretPlugin(selections), caretTheme);
  }
  if (undo) {
    extensions.push(
      Prec.highest(
        keymap.of([
          { key: 'Mod-z', run: () => runHistory('undo'), preventDefault: true },
          { key: 'Mod-Shift-z', run: () => runHistory('redo'), preventDefault: true },
          { key: 'Mod-y', run: () => runHistory('redo'), preventDefault: true },
        ]),
      ),
      // Undo and redo from the context or Edit menu arrive as input events.
      EditorView.domEventHandlers({
        beforeinput(event) {
          if (event.inputType !== 'historyUndo' && event.inputType !== 'historyRedo') return false;
          event.preventDefault();
          runHistory(event.inputType === 'historyUndo' ? 'undo' : 'redo');
          return true;
        },
      }),
    );
  }
  return extensions;
}
