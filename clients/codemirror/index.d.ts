// Type declarations for @chorus/codemirror.

import type { TextDoc } from '@chorus/client';
import type { AnnotationType, Extension, StateEffectType } from '@codemirror/state';

export interface ChorusOptions {
  /** Draw other members' carets and selections with their names (default true). */
  carets?: boolean;
  /** Bind Mod-z, Mod-Shift-z and Mod-y to the server's per-user undo and redo (default true). */
  undo?: boolean;
  /** Edits or undo requests that failed, e.g. a paste over the document limit (default: console.warn). */
  onError?: (error: Error) => void;
}

/**
 * The extension binding an editor to `doc`. Create the editor with the
 * document's text: `new EditorView({ parent, doc: doc.text, extensions: [basicSetup, chorus(doc)] })`.
 */
export function chorus(doc: TextDoc, options?: ChorusOptions): Extension;

/** Set on the transactions that bring remote changes (and resyncs) into the editor. */
export const remoteChange: AnnotationType<boolean>;

/** Dispatch to redraw the remote carets from the document's current selections. */
export const refreshCarets: StateEffectType<null>;
