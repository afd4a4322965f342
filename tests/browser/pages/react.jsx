// The React test page: members, a shared title and a counter, and a shared
// editor, with @chorus/react, as an application would write them. Bundled by
// esbuild (tests/browser/support.js) from these sources. Each component
// counts its renders in window.renders, so the test can see that a change
// re-renders only the components that show it.
// ?ws=ws://HOST:PORT/v1/ws&room=R&name=Ann

import { ChorusProvider, useConnectionState, useMembers, usePending, useRoom, useText, useValue } from '@chorus/react';
import { useCodeMirror } from '@chorus/react/codemirror';
import { basicSetup } from 'codemirror';
import { useState } from 'react';
import { createRoot } from 'react-dom/client';

const params = new URLSearchParams(location.search);
const name = params.get('name');
window.renders = { members: 0, title: 0, counter: 0 };

function Members({ room }) {
  window.renders.members++;
  const members = useMembers(room);
  return (
    <ul data-testid="members">
      {members.map((m) => (
        <li key={m.connection} style={{ background: m.user.color }}>
          {m.user.name}
        </li>
      ))}
    </ul>
  );
}

function Title({ room }) {
  window.renders.title++;
  const title = useValue(room, 'title');
  const [draft, setDraft] = useState('');
  const save = (e) => {
    e.preventDefault();
    room.updateValue('title', 'register', { op: 'set', value: draft });
    setDraft('');
  };
  return (
    <form onSubmit={save}>
      <h1 data-testid="title">{title ?? 'Untitled'}</h1>
      <input data-testid="title-input" value={draft} onChange={(e) => setDraft(e.target.value)} placeholder="New title" />
    </form>
  );
}

function Counter({ room }) {
  window.renders.counter++;
  const count = useValue(room, 'count') ?? 0;
  return (
    <p>
      <button data-testid="plus" onClick={() => room.updateValue('count', 'g_counter', { op: 'increment', by: 1 })}>
        +1
      </button>{' '}
      <span data-testid="count">{count}</span>
    </p>
  );
}

function Notes({ room }) {
  const { ref } = useCodeMirror(room, 'notes', { extensions: [basicSetup] });
  const [text] = useText(room, 'notes');
  return (
    <section data-testid="notes" data-text={text}>
      <div ref={ref} data-testid="editor" />
      <p data-testid="length">{text.length} characters</p>
    </section>
  );
}

function Status() {
  const state = useConnectionState();
  const pending = usePending();
  return <span data-testid="status">{pending > 0 ? 'saving…' : state}</span>;
}

function App() {
  const room = useRoom(params.get('room'));
  if (!room) return <p>joining…</p>;
  return (
    <main data-testid="app">
      <Status />
      <Members room={room} />
      <Title room={room} />
      <Counter room={room} />
      <Notes room={room} />
    </main>
  );
}

createRoot(document.getElementById('root')).render(
  <ChorusProvider url={params.get('ws')} options={{ user: name.toLowerCase(), name }}>
    <App />
  </ChorusProvider>,
);
