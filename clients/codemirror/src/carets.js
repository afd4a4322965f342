// Other people's carets and selections in a CodeMirror editor: a caret with
// the member's name and colour, and their selection tinted in that colour.
//
// The decorations are rebuilt from the SDK's placement of remote selections
// whenever it says they changed (the binding dispatches `refreshCarets`),
// and only mapped through the editor's own changes in between, because a
// local edit reaches the SDK during the very update that maps them.

import { StateEffect } from '@codemirror/state';
import { Decoration, EditorView, ViewPlugin, WidgetType } from '@codemirror/view';

/** Rebuild the remote carets from the SDK's current selections. */
export const refreshCarets = StateEffect.define();

// Colours come from the server (and, with tokens, from a JWT claim): only
// use what the browser parses as a colour.
function safeColor(color) {
  return typeof color === 'string' && globalThis.CSS && CSS.supports('color', color) ? color : '#8b8d98';
}

function displayName(user) {
  return (user && (user.name || user.id)) || 'Someone';
}

class CaretWidget extends WidgetType {
  constructor(connection, name, color, below) {
    super();
    this.connection = connection;
    this.name = name;
    this.color = color;
    this.below = below;
  }

  eq(other) {
    return other.connection === this.connection && other.name === this.name && other.color === this.color && other.below === this.below;
  }

  toDOM() {
    const caret = document.createElement('span');
    caret.className = this.below ? 'cm-chorus-caret cm-chorus-caret-below' : 'cm-chorus-caret';
    caret.dataset.user = this.name;
    caret.dataset.connection = this.connection;
    caret.style.setProperty('--chorus-user-color', this.color);
    caret.setAttribute('aria-hidden', 'true');
    const label = document.createElement('span');
    label.className = 'cm-chorus-caret-label';
    label.textContent = this.name;
    caret.append(label);
    return caret;
  }

  ignoreEvent() {
    return true;
  }
}

/**
 * The caret layer: `selections(view)` gives the remote selections as editor
 * positions ({connection, user, anchor, head}).
 */
export function caretPlugin(selections) {
  const build = (view) => {
    const length = view.state.doc.length;
    const ranges = [];
    for (const s of selections(view)) {
      const anchor = Math.max(0, Math.min(s.anchor, length));
      const head = Math.max(0, Math.min(s.head, length));
      const name = displayName(s.user);
      const color = safeColor(s.user && s.user.color);
      if (anchor !== head) {
        ranges.push(
          Decoration.mark({
            class: 'cm-chorus-selection',
            attributes: { style: `--chorus-user-color: ${color}`, 'data-user': name },
          }).range(Math.min(anchor, head), Math.max(anchor, head)),
        );
      }
      // A label above a caret on the first line would be cut off by the
      // editor's top edge: there it hangs below the caret instead.
      const below = view.state.doc.lineAt(head).number === 1;
      ranges.push(Decoration.widget({ widget: new CaretWidget(String(s.connection), name, color, below), side: 1 }).range(head));
    }
    return Decoration.set(ranges, true);
  };
  return ViewPlugin.fromClass(
    class {
      constructor(view) {
        this.decorations = build(view);
      }

      update(update) {
        if (update.transactions.some((tr) => tr.effects.some((e) => e.is(refreshCarets)))) {
          this.decorations = build(update.view);
        } else if (update.docChanged) {
          this.decorations = this.decorations.map(update.changes);
        }
      }
    },
    { decorations: (plugin) => plugin.decorations },
  );
}

export const caretTheme = EditorView.baseTheme({
  '.cm-chorus-selection': {
    backgroundColor: 'color-mix(in srgb, var(--chorus-user-color) 22%, transparent)',
  },
  '.cm-chorus-caret': {
    position: 'relative',
    borderLeft: '2px solid var(--chorus-user-color)',
    marginLeft: '-1px',
    marginRight: '-1px',
    pointerEvents: 'none',
  },
  '.cm-chorus-caret-label': {
    position: 'absolute',
    left: '-2px',
    bottom: '100%',
    zIndex: '10',
    padding: '0 5px 1px',
    borderRadius: '4px 4px 4px 0',
    backgroundColor: 'var(--chorus-user-color)',
    color: 'var(--chorus-user-text, #fff)',
    font: '600 11px/1.4 system-ui, sans-serif',
    whiteSpace: 'nowrap',
    userSelect: 'none',
  },
  '.cm-chorus-caret-below .cm-chorus-caret-label': {
    top: '100%',
    bottom: 'auto',
    borderRadius: '0 4px 4px 4px',
  },
});
