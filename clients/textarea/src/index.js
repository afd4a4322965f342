// @chorus/textarea: binds a <textarea> or <input> to a Chorus text document.
//
//   import { bindTextarea } from '@chorus/textarea';
//   const binding = bindTextarea(document.querySelector('textarea'), doc);
//   binding.destroy(); // when done
//
// The field owns input (typing, IME composition, spellcheck, paste,
// accessibility); the document's truth is in the SDK. `shown` is the
// document's text as the field holds it (a field turns "\r\n" and "\r" into
// "\n"); `shadow` is the document's own text, kept only while it has a "\r"
// (then positions are mapped, as in the CodeMirror binding; without one the
// field's positions are the document's). What the user typed is found by
// comparing the field with `shown` around the caret (one replacement per input
// event), and every remote change goes into the field with `setRangeText`, so
// that neither costs work in proportion to the document: the text is never
// rebuilt from the SDK, and the field and the SDK are checked against each
// other by their lengths. Remote changes keep the user's caret and selection
// where their text is and the view still when text above it changes. Ctrl-Z / Ctrl-Shift-Z / Ctrl-Y (and
// the Edit menu's undo and redo) go to the server's per-user undo, so they
// take back only this user's edits. Other people's carets and selections are
// drawn over the field with their names (see carets.js).

import { applyChanges, chorusChanges, diffText, editorChanges, lineMapping, normalizeLineBreaks } from '@chorus/client';
import { CaretOverlay } from './carets.js';
import { diffNear, endOfLastChange, mapPosition } from './text.js';

export { diffNear, endOfLastChange, mapPosition } from './text.js';

const IDENTITY = lineMapping('');

/**
 * Input types whose edit touches the caret or selection, so that comparing
 * the field around them finds it; any other input (a drop, a spellchecker's
 * replacement, an untyped event) is found by comparing the whole text.
 */
const AT_CARET = /^(insert(Text|LineBreak|Paragraph|FromPaste|FromPasteAsQuotation|FromYank|Transpose|CompositionText)|delete(Content|ContentBackward|ContentForward|WordBackward|WordForward|SoftLineBackward|SoftLineForward|HardLineBackward|HardLineForward|EntireSoftLine|ByCut))$/;

/**
 * Binds `field` to `doc` (a TextDoc of @chorus/client). Options:
 * - `carets` (default true): draw other people's carets and selections;
 * - `undo` (default true): Ctrl-Z and friends undo and redo on the server;
 * - `onError(error)`: edits or undo requests that failed (default: console.warn).
 * Returns the binding; `destroy()` unbinds (the field keeps its text).
 */
export function bindTextarea(field, doc, options = {}) {
  return new TextareaBinding(field, doc, options);
}

class TextareaBinding {
  constructor(field, doc, { carets = true, undo = true, onError } = {}) {
    if (!field || typeof field.setSelectionRange !== 'function') throw new TypeError('bindTextarea needs a <textarea> or <input>');
    this.field = field;
    this.singleLine = field.tagName === 'INPUT';
    this.doc = doc;
    this.onError = onError || ((err) => console.warn('[chorus textarea]', err));
    this.shadow = null;
    this.shown = '';
    this.mapping = IDENTITY;
    // The field's selection just before an edit (from beforeinput), a hint
    // for where the edit is.
    this.editStart = null;
    this.composing = false;
    // What the field held when a composition began, and the remote changes
    // (as field changes) that arrived during it: they are merged when it
    // ends, because setting the value mid-composition cancels the composition.
    this.composeBase = '';
    this.queued = [];
    this.lastSelection = null;
    this.historyRequests = 0;
    this.renderQueued = false;
    this.overlay = carets ? new CaretOverlay(field) : null;
    this.cleanup = [];

    const listen = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts);
      this.cleanup.push(() => target.removeEventListener(type, fn, opts));
    };
    listen(field, 'input', (e) => {
      if (e.isComposing || this.composing) return this.scheduleRender();
      this.syncLocal(e.inputType);
      this.sendSelection();
    });
    listen(field, 'compositionstart', () => {
      this.syncLocal();
      this.composing = true;
      this.composeBase = this.shown;
    });
    listen(field, 'compositionend', () => this.onCompositionEnd());
    if (undo) listen(field, 'keydown', (e) => this.onKeydown(e));
    listen(field, 'beforeinput', (e) => this.onBeforeInput(e, undo));
    for (const type of ['select', 'selectionchange', 'keyup', 'mouseup', 'focus']) listen(field, type, () => this.sendSelection());
    listen(field, 'scroll', () => this.scheduleRender(), { passive: true });
    if (this.overlay && typeof ResizeObserver === 'function') {
      const observer = new ResizeObserver(() => {
        this.overlay.copyStyles();
        this.scheduleRender();
      });
      observer.observe(field);
      this.cleanup.push(() => observer.disconnect());
    }
    this.cleanup.push(
      doc.on('change', (e) => this.onDocChange(e)),
      doc.on('selections', () => this.scheduleRender()),
    );
    this.setShadow(doc.text);
    this.write(field.selectionStart || 0, field.selectionEnd || 0, 'none');
    this.scheduleRender();
  }

  /** Unbinds: stops listening and removes the overlay; the field keeps its text. */
  destroy() {
    for (const undo of this.cleanup) undo();
    this.cleanup = [];
    if (this.overlay) this.overlay.destroy();
    this.overlay = null;
  }

  // ---- the field ---------------------------------------------------------

  /** The document's text is now `text` (in full: on binding and resyncing). */
  setShadow(text) {
    this.track(text);
    this.shown = this.fieldText(normalizeLineBreaks(text));
  }

  /** Keeps `shadow` and `mapping` for the document's text `text` (only needed with a "\r"). */
  track(text) {
    const hasCR = text.indexOf('\r') >= 0;
    this.shadow = hasCR ? text : null;
    this.mapping = hasCR ? lineMapping(text) : IDENTITY;
  }

  /**
   * Text with "\n" line breaks as the field holds it. An <input> holds one
   * line: the browser strips line breaks from its value, and comparing would
   * then delete them from the document. Each shows as a space instead (one
   * position for one, so positions still map); deleting that space deletes
   * the line break.
   */
  fieldText(text) {
    return this.singleLine && text.indexOf('\n') >= 0 ? text.replace(/\n/g, ' ') : text;
  }

  /** The document's length in UTF-16 units, as the binding knows it. */
  get docLength() {
    return this.shadow === null ? this.shown.length : this.shadow.length;
  }

  /** Whether the SDK and the binding agree, by lengths (free to check). */
  inStep(fieldLength) {
    return this.doc.length === this.docLength && fieldLength === this.shown.length;
  }

  /**
   * Puts `shown` into the field (whose text is `current`) without moving the
   * view or losing the selection: only what differs is replaced.
   */
  write(start, end, direction, current = this.field.value) {
    const f = this.field;
    const { scrollTop, scrollLeft } = f;
    const change = diffText(current, this.shown);
    if (change) f.setRangeText(change.insert, change.from, change.to);
    const len = this.shown.length;
    f.setSelectionRange(Math.min(start, len), Math.min(end, len), direction || 'none');
    f.scrollTop = scrollTop;
    f.scrollLeft = scrollLeft;
  }

  /** Hands what the user typed since the last sync to the SDK. */
  syncLocal(inputType) {
    if (this.composing) return;
    const f = this.field;
    const next = f.value;
    const hint = this.editStart;
    this.editStart = null;
    let change;
    if (typeof inputType === 'string' && AT_CARET.test(inputType)) {
      // The edit touches the selection before it and the caret after it (in
      // the text before the edit, positions past the edit are `delta` off).
      const delta = next.length - this.shown.length;
      const { selectionStart: a, selectionEnd: b } = f;
      const lo = Math.min(a, a - delta, hint ? hint.start : a);
      const hi = Math.max(b, b - delta, hint ? hint.end : b);
      change = next === this.shown ? null : diffNear(this.shown, next, Math.max(0, lo), Math.min(this.shown.length, hi));
    } else {
      change = diffText(this.shown, next);
    }
    if (!change) return;
    const edit = { from: change.from, to: change.to, lines: change.insert.split('\n') };
    // Without a "\r" the field's positions and lines are the document's.
    const changes = this.shadow === null ? [{ from: change.from, to: change.to, insert: change.insert }] : chorusChanges(this.shadow, [edit], this.mapping);
    try {
      this.doc.change(changes);
      if (this.shadow !== null) this.track(applyChanges(this.shadow, changes));
      this.shown = next;
    } catch (err) {
      // Refused (too large for the server's limits, say): the field goes back
      // to the document's text rather than show what will never be shared.
      this.onError(err);
      this.setShadow(this.doc.text);
      const caret = Math.min(change.from, this.shown.length);
      this.write(caret, caret, 'none', next);
    }
    this.resyncIfDiverged(this.shown === next ? next.length : f.value.length);
    this.scheduleRender();
  }

  /**
   * Safety net: if the field and the SDK ever disagree, the SDK wins. They
   * are compared by their lengths (`fieldLength` is the field's, when the
   * caller has it at hand), which costs nothing, rather than by building the
   * document's text on every change.
   */
  resyncIfDiverged(fieldLength = this.shown.length) {
    if (this.composing || this.inStep(fieldLength)) return;
    console.warn('[chorus textarea] the field and the document diverged; reloading the text');
    const { selectionStart, selectionEnd, selectionDirection } = this.field;
    this.setShadow(this.doc.text);
    this.write(selectionStart, selectionEnd, selectionDirection);
  }

  onDocChange(event) {
    if (!event.remote) return; // our own edit: already in the field
    // The change as the field sees it (its line breaks normalised).
    let changes;
    if (this.shadow === null && !event.changes.some((c) => c.insert.indexOf('\r') >= 0)) {
      changes = event.changes.map(({ from, to, insert }) => ({ from, to, insert: this.fieldText(insert) }));
    } else if (this.shadow === null && this.singleLine) {
      // A "\r" arrives in an <input>, whose spaces hide the line breaks the
      // mapping needs: take the document's text afresh (a rare case).
      return this.reload(event.undo === true && this.historyRequests > 0);
    } else {
      // A "\r" arrives, or was there: positions are mapped through the text
      // before the change (without a "\r", the field's own).
      const text = this.shadow === null ? this.shown : this.shadow;
      changes = editorChanges(text, event.changes, this.mapping).map((c) => ({ ...c, insert: this.fieldText(normalizeLineBreaks(c.insert)) }));
      this.track(applyChanges(text, event.changes));
    }
    const before = this.shown;
    this.shown = applyChanges(before, changes);
    if (this.composing) {
      this.queued.push(changes);
      return this.scheduleRender();
    }
    this.applyRemote(before, changes, event.undo === true && this.historyRequests > 0);
  }

  /** Brings the field to the document's text (`ownUndo`: the caret goes to the change). */
  reload(ownUndo) {
    const before = this.shown;
    this.setShadow(this.doc.text);
    const change = diffText(before, this.shown);
    const changes = change ? [change] : [];
    if (this.composing) {
      this.queued.push(changes);
      return this.scheduleRender();
    }
    this.applyRemote(before, changes, ownUndo);
  }

  /** Shows a remote change (`changes` of the field's text `before`). */
  applyRemote(before, changes, ownUndo) {
    const f = this.field;
    const direction = f.selectionDirection;
    let start = f.selectionStart;
    let end = f.selectionEnd;
    const collapsed = start === end;
    const value = this.shown;
    // A caret stays before someone else's insert at it; a selection's start
    // moves past it, so the selection does not swallow their text.
    start = mapPosition(start, changes, collapsed ? -1 : 1);
    end = mapPosition(end, changes, -1);
    if (end < start) end = start;
    // Our own undo or redo puts the caret where it acted, as a local undo would.
    const jump = ownUndo ? endOfLastChange(changes) : null;
    if (jump !== null) start = end = jump;
    // Keep the caret's line still on screen when text above it changes, so
    // the view does not jump while someone types higher up.
    const above = jump === null && changes.length > 0 && changes[0].from < f.selectionStart;
    const topBefore = above ? this.visibleCaretTop(before, f.selectionStart) : null;
    const { scrollTop, scrollLeft } = f;
    // Last change first: the earlier ones' positions stay as they were.
    for (let i = changes.length - 1; i >= 0; i--) f.setRangeText(changes[i].insert, changes[i].from, changes[i].to);
    f.setSelectionRange(start, end, direction || 'none');
    f.scrollTop = scrollTop;
    f.scrollLeft = scrollLeft;
    if (topBefore !== null) {
      const topAfter = this.overlay.caretTop(value, start);
      if (topAfter !== null) f.scrollTop += topAfter - topBefore;
    }
    if (jump !== null && f.ownerDocument.activeElement === f) this.keepCaretVisible();
    if (this.lastSelection) {
      // The server moves our published selection through the same changes;
      // follow it so an unchanged selection is not sent again.
      this.lastSelection = {
        anchor: mapPosition(this.lastSelection.anchor, changes, -1),
        head: mapPosition(this.lastSelection.head, changes, -1),
      };
    }
    this.resyncIfDiverged();
    if (jump !== null) this.sendSelection();
    this.scheduleRender();
  }

  onCompositionEnd() {
    this.composing = false;
    const queued = this.queued;
    this.queued = [];
    if (queued.length === 0) {
      this.syncLocal();
      this.sendSelection();
      return;
    }
    // Others edited while the IME was composing: move the composed change
    // through their changes, then show the merged text.
    const change = diffText(this.composeBase, this.field.value);
    let caret = this.field.selectionEnd;
    if (change) {
      let from = change.from;
      let to = change.to;
      for (const changes of queued) {
        from = mapPosition(from, changes, -1);
        to = mapPosition(to, changes, -1);
      }
      if (to < from) to = from;
      try {
        this.doc.change(chorusChanges(this.shadow, [{ from, to, lines: change.insert.split('\n') }], this.mapping));
        caret = from + change.insert.length;
      } catch (err) {
        this.onError(err);
        caret = from;
      }
    }
    this.setShadow(this.doc.text);
    this.write(caret, caret, 'none');
    this.sendSelection();
    this.scheduleRender();
  }

  /** Shows this user's selection to the others (when the SDK has every local change). */
  sendSelection() {
    const f = this.field;
    if (this.composing || this.queued.length || f.value.length !== this.shown.length) return;
    const backward = f.selectionDirection === 'backward';
    const anchor = backward ? f.selectionEnd : f.selectionStart;
    const head = backward ? f.selectionStart : f.selectionEnd;
    const last = this.lastSelection;
    if (last && last.anchor === anchor && last.head === head) return;
    this.lastSelection = { anchor, head };
    try {
      this.doc.setSelection(this.mapping.toChorus(anchor), this.mapping.toChorus(head));
    } catch (err) {
      // Typically "not open yet": the next selection event retries.
      this.lastSelection = null;
    }
  }

  // ---- undo and redo ---------------------------------------------------

  /** Takes back this user's latest step (on the server); resolves to whether there was one. */
  undo() {
    return this.runHistory('undo');
  }

  /** Puts back what this user's latest undo took back. */
  redo() {
    return this.runHistory('redo');
  }

  async runHistory(kind) {
    this.syncLocal();
    this.historyRequests++;
    try {
      return await (kind === 'undo' ? this.doc.undo() : this.doc.redo());
    } catch (err) {
      this.onError(err);
      return false;
    } finally {
      this.historyRequests--;
    }
  }

  onKeydown(e) {
    if (e.isComposing || e.altKey || !(e.ctrlKey || e.metaKey)) return;
    // event.code keeps the shortcuts on non-Latin keyboard layouts.
    const key = /^[a-z]$/i.test(e.key) ? e.key.toLowerCase() : e.code.replace(/^Key/, '').toLowerCase();
    if (key === 'z') {
      // The field's own undo would rewind only this field, out of step with
      // the shared document.
      e.preventDefault();
      this.runHistory(e.shiftKey ? 'redo' : 'undo');
    } else if (key === 'y' && e.ctrlKey) {
      e.preventDefault();
      this.runHistory('redo');
    }
  }

  onBeforeInput(e, undo) {
    const f = this.field;
    this.editStart = { start: f.selectionStart, end: f.selectionEnd };
    // Undo and redo from the context or Edit menu arrive here, not as keys.
    if (undo && (e.inputType === 'historyUndo' || e.inputType === 'historyRedo')) {
      e.preventDefault();
      this.runHistory(e.inputType === 'historyUndo' ? 'undo' : 'redo');
    }
  }

  // ---- the overlay -------------------------------------------------------

  scheduleRender() {
    if (!this.overlay || this.renderQueued) return;
    this.renderQueued = true;
    const run = () => {
      this.renderQueued = false;
      if (this.overlay) this.render();
    };
    // requestAnimationFrame does not run in background tabs; a timer does.
    if (this.field.ownerDocument.hidden || typeof requestAnimationFrame !== 'function') setTimeout(run, 50);
    else requestAnimationFrame(run);
  }

  render() {
    const f = this.field;
    // While a composition or queued changes hold the field apart from the
    // SDK, positions do not match: draw nothing rather than draw wrong.
    const inStep = !this.composing && !this.queued.length && this.inStep(f.value.length);
    const selections = inStep && !this.doc.closed ? this.doc.remoteSelections() : [];
    const { toEditor } = this.mapping;
    this.overlay.render(
      f.value,
      selections.map((s) => ({ ...s, anchor: toEditor(s.anchor), head: toEditor(s.head) })),
    );
  }

  /** The caret's top if it is on screen, measured in `text`; else null. */
  visibleCaretTop(text, pos) {
    const f = this.field;
    if (!this.overlay || f.scrollHeight <= f.clientHeight) return null;
    const top = this.overlay.caretTop(text, pos);
    if (top === null) return null;
    return top >= f.scrollTop && top < f.scrollTop + f.clientHeight ? top : null;
  }

  keepCaretVisible() {
    if (!this.overlay) return;
    const f = this.field;
    const top = this.overlay.caretTop(f.value, f.selectionEnd);
    if (top === null) return;
    const height = this.overlay.lineHeightPx;
    if (top < f.scrollTop) f.scrollTop = top - height;
    else if (top + height > f.scrollTop + f.clientHeight) f.scrollTop = top + 2 * height - f.clientHeight;
  }
}
