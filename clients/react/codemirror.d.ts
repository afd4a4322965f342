// Type declarations for @chorus/react/codemirror.

import type { ChorusOptions } from '@chorus/codemirror';
import type { Room, TextDoc } from '@chorus/client';
import type { Extension } from '@codemirror/state';
import type { EditorView } from '@codemirror/view';

export interface UseCodeMirrorOptions extends ChorusOptions {
  /** The editor's own extensions (a setup, a language, a theme); read when the editor is made. */
  extensions?: Extension;
}

/**
 * Opens the document and puts an editor bound to it in the element `ref`
 * points at. `view` and `doc` are null until ready.
 */
export function useCodeMirror(
  room: Room | null,
  name: string,
  options?: UseCodeMirrorOptions,
): { ref: (element: HTMLElement | null) => void; view: EditorView | null; doc: TextDoc | null };
