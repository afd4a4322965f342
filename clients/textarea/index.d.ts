// Type declarations for @chorus/textarea.

import type { TextChange, TextDoc } from '@chorus/client';

export interface TextareaBindingOptions {
  /** Draw other people's carets and selections with their names over the field (default true). */
  carets?: boolean;
  /** Ctrl-Z / Ctrl-Shift-Z / Ctrl-Y (and the Edit menu) undo and redo on the server (default true). */
  undo?: boolean;
  /** Edits or undo requests that failed, e.g. a paste over the document limit (default: console.warn). */
  onError?: (error: Error) => void;
}

export interface TextareaBinding {
  readonly field: HTMLTextAreaElement | HTMLInputElement;
  readonly doc: TextDoc;
  /** Takes back this user's latest step on the server; resolves to whether there was one. */
  undo(): Promise<boolean>;
  /** Puts back what this user's latest undo took back. */
  redo(): Promise<boolean>;
  /** Stops listening and removes the carets; the field keeps its text. */
  destroy(): void;
}

/** Binds a `<textarea>` or `<input>` to a Chorus text document. */
export function bindTextarea(field: HTMLTextAreaElement | HTMLInputElement, doc: TextDoc, options?: TextareaBindingOptions): TextareaBinding;

/**
 * Where UTF-16 offset `pos` of the text before `changes` is afterwards;
 * `assoc` -1 keeps it before an insert exactly at it, 1 moves it after.
 */
export function mapPosition(pos: number, changes: TextChange[], assoc?: -1 | 1): number;

/** The offset right after the last replacement, in the text after `changes` (null if there is none). */
export function endOfLastChange(changes: TextChange[]): number | null;
