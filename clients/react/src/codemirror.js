// useCodeMirror: a CodeMirror 6 editor bound to a Chorus document, as a hook.
// A separate entry point (`@chorus/react/codemirror`) so that apps without
// CodeMirror never load it.
//
//   const { ref } = useCodeMirror(room, 'body', { extensions: [basicSetup] });
//   return <div ref={ref} />;

import { chorus } from '@chorus/codemirror';
import { EditorView } from '@codemirror/view';
import { useEffect, useState } from 'react';
import { useDoc } from './index.js';

/**
 * Opens document `name` of `room` and, once it is open and the element
 * `ref` points at is mounted, puts an editor bound to it there. `extensions`
 * are the editor's own (a setup, a language, a theme); the other options go
 * to the binding (`carets`, `undo`, `onError`). Returns `{ref, view, doc}`:
 * the ref callback for the parent element, then the EditorView and the
 * TextDoc (null until ready). The editor is made once per document and
 * element: extensions given on later renders are not applied.
 */
export function useCodeMirror(room, name, { extensions = [], ...bindingOptions } = {}) {
  const doc = useDoc(room, name);
  const [parent, setParent] = useState(null);
  const [view, setView] = useState(null);
  useEffect(() => {
    if (!doc || !parent) return undefined;
    const editor = new EditorView({ parent, doc: doc.text, extensions: [extensions, chorus(doc, bindingOptions)] });
    setView(editor);
    return () => {
      setView(null);
      editor.destroy();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [doc, parent]);
  return { ref: setParent, view, doc };
}
