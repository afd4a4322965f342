// Other people's carets and selections drawn over a <textarea> or <input>.
//
// A form field cannot style parts of its own text, so the overlay is a layer
// laid over the field's padding box. Inside it, an invisible mirror holds the
// same text with the field's computed font, padding and wrapping, so a DOM
// Range over the mirror gives the on-screen rectangle of any text position;
// the layer's content follows the field's scroll through a transform. The
// overlay is a sibling placed right after the field and positioned from the
// field's offsets, so it needs nothing from the page's layout.
//
// The class names (`chorus-caret`, `chorus-caret-label`, `chorus-selection`)
// and the custom property `--chorus-user-color` are the styling hooks; the
// default styles below use :where() so any page rule overrides them.

const STYLE_ID = 'chorus-textarea-styles';
const DEFAULT_STYLES = `
:where(.chorus-overlay) { position: absolute; overflow: hidden; pointer-events: none; z-index: 1; }
:where(.chorus-overlay-content) { position: relative; }
:where(.chorus-mirror) { position: absolute; top: 0; left: 0; visibility: hidden; margin: 0; border: 0; box-sizing: border-box; }
:where(.chorus-marks) { position: absolute; inset: 0; }
:where(.chorus-selection) { position: absolute; border-radius: 2px; background: var(--chorus-user-color); opacity: 0.2; }
:where(.chorus-caret) { position: absolute; width: 2px; margin-left: -1px; border-radius: 1px; background: var(--chorus-user-color); }
:where(.chorus-caret-label) { position: absolute; bottom: 100%; left: 0; padding: 1px 5px 2px; border-radius: 4px 4px 4px 0;
  background: var(--chorus-user-color); color: var(--chorus-user-text, #fff); font: 600 11px/1.3 system-ui, sans-serif; white-space: nowrap; }
:where(.chorus-caret-below .chorus-caret-label) { top: 100%; bottom: auto; border-radius: 0 4px 4px 4px; }
:where(.chorus-caret-flip .chorus-caret-label) { left: auto; right: 0; border-radius: 4px 4px 0 4px; }
:where(.chorus-caret-flip.chorus-caret-below .chorus-caret-label) { border-radius: 4px 0 4px 4px; }
`;

/** Every computed property that decides where the field's text goes. */
const MIRRORED = [
  'font-family', 'font-size', 'font-weight', 'font-style', 'font-variant', 'font-stretch', 'font-kerning',
  'font-feature-settings', 'font-variant-ligatures', 'line-height', 'letter-spacing', 'word-spacing',
  'text-indent', 'text-transform', 'text-align', 'tab-size', 'word-break', 'overflow-wrap', 'hyphens', 'direction',
  'padding-top', 'padding-right', 'padding-bottom', 'padding-left',
];

/** How far from the field's top a caret must be for its label to fit above it. */
const LABEL_ROOM = 20;
/** How far from the field's right edge a label flips to the caret's left. */
const LABEL_WIDTH = 140;

function injectStyles(document) {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement('style');
  style.id = STYLE_ID;
  style.textContent = DEFAULT_STYLES;
  document.head.prepend(style);
}

// Colours come from the server (and, with tokens, from a JWT claim): only
// use what the browser parses as a colour.
function safeColor(color) {
  return typeof color === 'string' && globalThis.CSS && CSS.supports('color', color) ? color : '#8b8d98';
}

export function displayName(user) {
  return (user && (user.name || user.id)) || 'Someone';
}

export class CaretOverlay {
  /** @param {HTMLTextAreaElement | HTMLInputElement} field */
  constructor(field) {
    this.field = field;
    const document = field.ownerDocument;
    injectStyles(document);
    this.singleLine = field.tagName === 'INPUT';
    this.root = document.createElement('div');
    this.root.className = 'chorus-overlay';
    this.root.setAttribute('aria-hidden', 'true');
    this.content = document.createElement('div');
    this.content.className = 'chorus-overlay-content';
    this.mirror = document.createElement('div');
    this.mirror.className = 'chorus-mirror';
    this.text = document.createTextNode('');
    this.mirror.append(this.text);
    this.marks = document.createElement('div');
    this.marks.className = 'chorus-marks';
    this.selectionLayer = document.createElement('div');
    this.caretLayer = document.createElement('div');
    this.marks.append(this.selectionLayer, this.caretLayer);
    this.content.append(this.mirror, this.marks);
    this.root.append(this.content);
    field.after(this.root);
    this.range = document.createRange();
    // Carets are kept per connection so that a move is a style change (a
    // transition can animate it) rather than a new element.
    this.carets = new Map();
    this.copyStyles();
  }

  /** Copies the field's text layout onto the mirror (call when the field's size or style changes). */
  copyStyles() {
    const style = getComputedStyle(this.field);
    for (const name of MIRRORED) this.mirror.style.setProperty(name, style.getPropertyValue(name));
    this.mirror.style.whiteSpace = this.singleLine ? 'pre' : 'pre-wrap';
    if (!this.singleLine) this.mirror.style.overflowWrap = style.getPropertyValue('overflow-wrap') || 'break-word';
    this.lineHeightPx = parseFloat(style.lineHeight);
    if (!Number.isFinite(this.lineHeightPx)) this.lineHeightPx = parseFloat(style.fontSize) * 1.2;
    if (this.singleLine) {
      // An <input> centres its one line vertically.
      const inner = this.field.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
      this.mirror.style.lineHeight = `${Math.max(inner, this.lineHeightPx)}px`;
      this.lineHeightPx = Math.max(inner, this.lineHeightPx);
    }
  }

  /** Puts the overlay over the field's padding box and sets the mirror's text. */
  place(value) {
    const f = this.field;
    const r = this.root.style;
    r.left = `${f.offsetLeft + f.clientLeft}px`;
    r.top = `${f.offsetTop + f.clientTop}px`;
    r.width = `${f.clientWidth}px`;
    r.height = `${f.clientHeight}px`;
    this.content.style.transform = `translate(${-f.scrollLeft}px, ${-f.scrollTop}px)`;
    this.setText(value);
  }

  setText(value) {
    // A trailing zero-width space gives a final empty line a box to measure.
    const content = `${value}\u200b`;
    if (this.text.data !== content) this.text.data = content;
    const width = this.singleLine ? 'auto' : `${this.field.clientWidth}px`;
    if (this.mirror.style.width !== width) this.mirror.style.width = width;
  }

  /** The caret box of position `pos` relative to the mirror's corner, or null. */
  caretBox(pos) {
    const len = this.text.data.length - 1;
    const at = Math.max(0, Math.min(pos, len));
    const origin = this.mirror.getBoundingClientRect();
    this.range.setStart(this.text, at);
    this.range.setEnd(this.text, at);
    let rect = this.range.getClientRects()[0];
    if (!rect || (rect.width === 0 && rect.height === 0 && rect.top === 0)) {
      // A collapsed range has no box in some engines: use the next character's.
      this.range.setEnd(this.text, at + 1);
      rect = this.range.getClientRects()[0];
    }
    if (!rect) return null;
    const height = this.lineHeightPx;
    return { left: rect.left - origin.left, top: rect.top - origin.top + rect.height / 2 - height / 2, height };
  }

  /** Where the caret at `pos` of `value` is, from the top of the text (for keeping the view still). */
  caretTop(value, pos) {
    this.setText(value);
    const box = this.caretBox(pos);
    return box ? box.top : null;
  }

  /** Draws `selections` ({connection, user, anchor, head}, UTF-16 offsets of `value`). */
  render(value, selections) {
    this.place(value);
    const f = this.field;
    const len = value.length;
    const origin = this.mirror.getBoundingClientRect();
    const height = this.lineHeightPx;
    const boxes = f.ownerDocument.createDocumentFragment();
    const seen = new Set();
    for (const s of selections) {
      const name = displayName(s.user);
      const color = safeColor(s.user && s.user.color);
      const anchor = Math.max(0, Math.min(s.anchor, len));
      const head = Math.max(0, Math.min(s.head, len));
      if (anchor !== head) {
        this.range.setStart(this.text, Math.min(anchor, head));
        this.range.setEnd(this.text, Math.max(anchor, head));
        for (const rect of this.range.getClientRects()) {
          const box = f.ownerDocument.createElement('div');
          box.className = 'chorus-selection';
          box.dataset.user = name;
          box.style.setProperty('--chorus-user-color', color);
          box.style.left = `${rect.left - origin.left}px`;
          box.style.top = `${rect.top - origin.top + rect.height / 2 - height / 2}px`;
          // A selected line break has no width: a sliver shows it.
          box.style.width = `${Math.max(rect.width, 4)}px`;
          box.style.height = `${height}px`;
          boxes.append(box);
        }
      }
      const at = this.caretBox(head);
      if (!at) continue;
      const key = String(s.connection);
      seen.add(key);
      let caret = this.carets.get(key);
      if (!caret) {
        caret = f.ownerDocument.createElement('div');
        caret.className = 'chorus-caret';
        const label = f.ownerDocument.createElement('span');
        label.className = 'chorus-caret-label';
        caret.append(label);
        this.carets.set(key, caret);
        this.caretLayer.append(caret);
      }
      caret.dataset.user = name;
      caret.dataset.connection = key;
      caret.firstChild.textContent = name;
      caret.style.setProperty('--chorus-user-color', color);
      caret.style.left = `${at.left}px`;
      caret.style.top = `${at.top}px`;
      caret.style.height = `${at.height}px`;
      // A label above a caret on the first visible line would be cut off by
      // the field's edge, and one near the right edge would overflow: flip.
      caret.classList.toggle('chorus-caret-below', at.top - f.scrollTop < LABEL_ROOM);
      caret.classList.toggle('chorus-caret-flip', at.left - f.scrollLeft > f.clientWidth - LABEL_WIDTH);
    }
    for (const [key, caret] of this.carets) {
      if (!seen.has(key)) {
        caret.remove();
        this.carets.delete(key);
      }
    }
    this.selectionLayer.replaceChildren(boxes);
  }

  destroy() {
    this.root.remove();
    this.carets.clear();
  }
}
