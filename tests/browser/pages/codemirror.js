// The CodeMirror test page: one editor bound to a Chorus document with
// @chorus/codemirror, as an integrator would write it. Bundled by esbuild
// (tests/browser/support.js) from these sources, the binding's and the
// SDK's. The query string says where to connect and who this is:
// ?ws=ws://HOST:PORT/v1/ws&room=R&doc=D&name=Ann

import { connect } from '@chorus/client';
import { chorus, remoteChange } from '@chorus/codemirror';
import { basicSetup, EditorView } from 'codemirror';

const params = new URLSearchParams(location.search);
const name = params.get('name') || 'Someone';
const client = connect(params.get('ws'), { user: name.toLowerCase(), name });
const state = document.getElementById('state');
client.on('state', (s) => {
  state.textContent = s;
  state.dataset.state = s;
});
client.on('pending', (n) => {
  state.dataset.pending = String(n);
});
const room = await client.join(params.get('room'));
const members = document.getElementById('members');
const showMembers = () => {
  members.replaceChildren(
    ...room.members.map((m) => {
      const li = document.createElement('li');
      li.textContent = m.user.name || m.user.id;
      li.style.setProperty('--color', m.user.color);
      return li;
    }),
  );
};
room.on('members', showMembers);
showMembers();
document.getElementById('room').textContent = room.name;
const doc = await room.openDoc(params.get('doc') || 'body');
// For the test: how many editor transactions carried remote changes, and how
// many local edits the document got (an echo of a remote change would be one).
const counts = { remoteTransactions: 0, localChanges: 0 };
const countRemote = EditorView.updateListener.of((u) => {
  counts.remoteTransactions += u.transactions.filter((tr) => tr.annotation(remoteChange)).length;
});
doc.on('change', (e) => {
  if (!e.remote) counts.localChanges++;
});
const view = new EditorView({ parent: document.getElementById('editor'), doc: doc.text, extensions: [basicSetup, chorus(doc), countRemote] });
view.focus();
// For the test: the editor's text, and the document's.
window.chorusPage = { client, room, doc, view, counts, text: () => view.state.doc.toString() };
document.documentElement.dataset.ready = 'true';
