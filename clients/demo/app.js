// Chorus demo page: one shared document per room, with live carets, presence,
// a shared title, a view counter and tags. Served by the Chorus server itself
// (no build step), so this file is plain ES2020 and imports only the SDK and
// the textarea binding, by their package names, which the page's import map
// points at the server's /sdk/ copies.
import { connect } from '@chorus/client';
import { bindTextarea } from '@chorus/textarea';

// index.html shows a "could not load" banner if this flag never appears, which
// is the only symptom of a failed module import.
document.documentElement.dataset.app = 'started';

const DEFAULT_ROOM = 'welcome';
const DOC_NAME = 'body';
// The server's rule for room names (protocol.md, "Room names"); checking it here
// lets the page explain the problem instead of showing a bare `invalid_room`.
const ROOM_NAME_RE = /^[A-Za-z0-9_.:/@~-]{1,128}$/;
const MAX_AVATARS = 6;
const MAX_NAME_LENGTH = 40;
const MAX_TAG_LENGTH = 32;
const STORAGE_KEYS = { user: 'chorus.demo.user', name: 'chorus.demo.name' };

const STATE_LABELS = {
  connecting: 'connecting',
  open: 'connected',
  saving: 'saving…',
  unsaved: 'not saved yet',
  reconnecting: 'reconnecting',
  closed: 'offline',
};
const STATE_HINTS = {
  connecting: 'Connecting to the Chorus server…',
  open: 'Connected: every change is saved and shared live',
  saving: 'Your latest changes are on their way to the server',
  unsaved: 'The server has not confirmed your latest changes yet; they are kept and sent again until it does',
  reconnecting: 'Connection lost: your edits are kept and sent when it comes back',
  closed: 'Not connected to the server',
};
// While changes wait for the server (client.pending), the badge says
// "saving…" after a short while (a quick round trip does not flicker) and
// "not saved yet" when it lasts (the server cannot store, say).
const SAVING_AFTER_MS = 300;
const UNSAVED_AFTER_MS = 4000;
// Messages people can act on, for the error codes a demo visitor can actually hit.
const FRIENDLY_ERRORS = {
  room_full: 'This room is full. Try another room.',
  forbidden: 'You are not allowed to do that in this room.',
  rate_limited: 'Slow down a little: the server is limiting this tab.',
  op_too_large: 'That edit is too large to send in one go.',
  document_too_large: 'The document has reached its size limit.',
  value_too_large: 'That value is too large to store.',
  too_many_values: 'This room cannot hold more shared values.',
  too_many_rooms: 'This tab has joined too many rooms.',
  unavailable: 'The server is busy. Please try again in a moment.',
  disconnected: 'The connection dropped before the server answered; that change may not have been saved.',
};

const UNAUTHORIZED_MESSAGE = 'This Chorus server requires sign-in tokens, so the open demo cannot join. Start the server with --dev to try the demo.';

const ADJECTIVES = [
  'Amber', 'Azure', 'Brave', 'Calm', 'Cobalt', 'Coral', 'Golden', 'Indigo', 'Jade', 'Jolly',
  'Lilac', 'Lucky', 'Maple', 'Mint', 'Misty', 'Olive', 'Plum', 'Rosy', 'Ruby', 'Saffron',
  'Sandy', 'Silver', 'Sunny', 'Swift', 'Teal',
];
const ANIMALS = [
  'Badger', 'Beaver', 'Crane', 'Dolphin', 'Falcon', 'Fox', 'Gecko', 'Hedgehog', 'Heron', 'Ibis',
  'Koala', 'Lynx', 'Marten', 'Narwhal', 'Otter', 'Owl', 'Panda', 'Puffin', 'Quokka', 'Seal',
  'Sparrow', 'Tiger', 'Walrus', 'Wombat', 'Yak',
];

const $ = (id) => document.getElementById(id);
const ui = {
  roomName: $('room-name'),
  copyLink: $('copy-link'),
  state: $('state'),
  members: $('members'),
  memberCount: $('member-count'),
  me: $('me'),
  meName: $('me-name'),
  banner: $('banner'),
  title: $('title'),
  views: $('views'),
  viewsText: $('views-text'),
  tagList: $('tag-list'),
  tagInput: $('tag-input'),
  undo: $('undo'),
  redo: $('redo'),
  stats: $('doc-stats'),
  editor: $('editor'),
  toasts: $('toasts'),
  newRoom: $('new-room'),
  nameDialog: $('name-dialog'),
  nameInput: $('name-input'),
  nameRandom: $('name-random'),
};

const numberFormat = new Intl.NumberFormat();

// ---------------------------------------------------------------------------
// Small helpers

// The identity lives in sessionStorage, which belongs to one tab: every tab
// is its own user (its own name on its caret, its own undo history), and a
// reload keeps the tab's identity. sessionStorage throws in some privacy
// modes; the page still works without it, the identity just does not
// survive a reload.
const storage = {
  get(key) {
    try { return sessionStorage.getItem(key); } catch { return null; }
  },
  set(key, value) {
    try { sessionStorage.setItem(key, value); } catch { /* not persisted */ }
  },
};

// crypto.randomUUID only exists in secure contexts, and the demo is often
// opened over plain http on a LAN address.
function randomHex(bytes) {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, '0')).join('');
}

function pick(list) {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  return list[buf[0] % list.length];
}

function randomName() {
  return `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;
}

function randomRoomName() {
  return `${pick(ADJECTIVES)}-${pick(ANIMALS)}-${randomHex(2)}`.toLowerCase();
}

// FNV-1a: a stable, dependency-free hash so that `?name=Ann` maps to the same
// user id on every load (same colour, same undo history).
function hash32(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

function cleanName(text) {
  return Array.from(String(text ?? '').replace(/\s+/g, ' ').trim()).slice(0, MAX_NAME_LENGTH).join('');
}

function displayName(user) {
  return (user && (user.name || user.id)) || 'Someone';
}

function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  // Array.from keeps an emoji or accented initial in one piece.
  return letters.map((w) => Array.from(w)[0] || '').join('').toUpperCase() || '?';
}

// Colours come from the server (and, with tokens, from a JWT claim): only pass
// on what the browser parses as a colour.
function safeColor(color) {
  return typeof color === 'string' && CSS.supports('color', color) ? color : '#8b8d98';
}

// White initials and labels on a user's colour, unless the colour is so light
// that dark text reads better. The browser resolves any CSS colour to rgb().
const textColorCache = new Map();
function textColorOn(color) {
  let result = textColorCache.get(color);
  if (result) return result;
  const probe = document.createElement('span');
  probe.style.color = color;
  probe.style.display = 'none';
  document.body.append(probe);
  const [r, g, b] = (getComputedStyle(probe).color.match(/[\d.]+/g) || [0, 0, 0]).map(Number);
  probe.remove();
  const linear = (c) => {
    const v = c / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  // Contrast is equal for white and near-black around 0.18; white reads as the
  // "avatar" convention on mid-tones, so only clearly light colours flip.
  result = luminance > 0.3 ? '#1b1d23' : '#ffffff';
  textColorCache.set(color, result);
  return result;
}

/** Sets the custom properties the stylesheet uses to paint in a user's colour. */
function paintUserColor(el, color) {
  const safe = safeColor(color);
  el.style.setProperty('--user-color', safe);
  el.style.setProperty('--user-text', textColorOn(safe));
}

function safeImageUrl(url) {
  if (typeof url !== 'string' || !url) return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
  } catch {
    return null;
  }
}

function describeError(err) {
  if (!err) return 'Something went wrong.';
  return FRIENDLY_ERRORS[err.code] || err.message || String(err);
}

// Errors the SDK recovers from by itself (rejoining, reopening, resubmitting):
// a toast would only alarm.
const SELF_HEALING_ERRORS = new Set([
  'not_joined', 'not_open', 'already_joined', 'version_trimmed', 'future_version', 'stale_seq', 'unavailable',
]);

function plural(n, one, many) {
  return `${numberFormat.format(n)} ${n === 1 ? one : many}`;
}

// Calls that may or may not return a promise (the SDK's fire-and-forget edits):
// report a rejection instead of leaving it unhandled.
function guard(result) {
  if (result && typeof result.catch === 'function') result.catch(reportError);
  return result;
}

// ---------------------------------------------------------------------------
// Room and identity, from the URL and the tab's sessionStorage

const params = new URLSearchParams(location.search);
const roomName = (params.get('room') || '').trim() || DEFAULT_ROOM;

function loadIdentity() {
  const nameParam = cleanName(params.get('name'));
  const userParam = (params.get('user') || '').trim();

  let name = cleanName(storage.get(STORAGE_KEYS.name));
  let fresh = false;
  if (!nameParam && !name) {
    name = randomName();
    storage.set(STORAGE_KEYS.name, name);
    fresh = true;
  }

  // URL overrides are for tests and for sharing one identity: every page
  // opened with the same ?name= is the same user (same colour, same undo
  // history), so the id follows the name rather than the tab.
  if (userParam || nameParam) {
    const slug = nameParam.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40);
    const id = userParam || `guest-${slug ? `${slug}-` : ''}${hash32(nameParam)}`;
    return { id, name: nameParam || name || randomName(), fresh: false, fromUrl: true };
  }

  let id = storage.get(STORAGE_KEYS.user);
  if (!id) {
    id = `guest-${randomHex(6)}`;
    storage.set(STORAGE_KEYS.user, id);
  }
  return { id, name, fresh, fromUrl: false };
}

const identity = loadIdentity();

// The link to share: the room only, so whoever opens it gets their own identity.
function shareUrl() {
  const url = new URL(location.pathname, location.origin);
  if (roomName !== DEFAULT_ROOM) url.searchParams.set('room', roomName);
  return url.href;
}

// ---------------------------------------------------------------------------
// Session state

let client = null;
let room = null;
let doc = null;
let myConnection = null;
let me = { id: identity.id, name: identity.name, color: null };
let sharedTitle = '';
let titleAtFocus = null;
let currentTags = [];
let unauthorized = false;

// ---------------------------------------------------------------------------
// Toasts and banner

const recentToasts = new Map();

function toast(message, { kind = 'info', action = null, duration = 3200 } = {}) {
  // The same error can arrive both as a rejected request and as a client
  // 'error' event; show it once.
  const now = Date.now();
  if (recentToasts.get(message) > now - 2000) return;
  recentToasts.set(message, now);

  const el = document.createElement('div');
  el.className = `toast toast-${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  const text = document.createElement('span');
  text.textContent = message;
  el.append(text);
  if (action) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'toast-action';
    button.textContent = action.label;
    button.addEventListener('click', () => {
      el.remove();
      action.run();
    });
    el.append(button);
  }
  ui.toasts.append(el);
  setTimeout(() => {
    el.classList.add('is-leaving');
    setTimeout(() => el.remove(), 250);
  }, duration);
}

function reportError(err) {
  console.warn('[chorus demo]', err);
  toast(describeError(err), { kind: 'error', duration: 4500 });
}

function showBanner(message) {
  ui.banner.textContent = message;
  ui.banner.hidden = false;
}

// ---------------------------------------------------------------------------
// Header: room, connection state, members, "me"

let pendingSince = null;
const pendingTimers = [];

function onPending(count) {
  if (count > 0 && pendingSince === null) {
    pendingSince = Date.now();
    pendingTimers.push(setTimeout(renderState, SAVING_AFTER_MS), setTimeout(renderState, UNSAVED_AFTER_MS));
  } else if (count === 0 && pendingSince !== null) {
    pendingSince = null;
    for (const t of pendingTimers.splice(0)) clearTimeout(t);
  }
  renderState();
}

function renderState() {
  let state = client ? client.state : 'connecting';
  if (state === 'open' && pendingSince !== null) {
    const waited = Date.now() - pendingSince;
    if (waited >= UNSAVED_AFTER_MS) state = 'unsaved';
    else if (waited >= SAVING_AFTER_MS) state = 'saving';
  }
  ui.state.textContent = STATE_LABELS[state] || state;
  ui.state.dataset.state = state;
  ui.state.title = STATE_HINTS[state] || '';
  updateControls();
}

function updateControls() {
  const open = client && client.state === 'open';
  ui.undo.disabled = !(doc && open);
  ui.redo.disabled = !(doc && open);
  ui.title.disabled = !room;
  ui.tagInput.disabled = !room;
}

function renderMe() {
  ui.meName.textContent = me.name || me.id;
  paintUserColor(ui.me, me.color);
  ui.me.title = `You are ${me.name || me.id}. Click to change your name.`;
}

function memberLabel(member) {
  const name = displayName(member.user);
  const notes = [];
  if (member.connection === myConnection) notes.push('you');
  else if (member.user && member.user.id === me.id) notes.push('you, in another tab');
  if (member.state && member.state.status === 'away') notes.push('away');
  return notes.length ? `${name} (${notes.join(', ')})` : name;
}

function avatarElement(member) {
  const user = member.user || {};
  const name = displayName(user);
  const li = document.createElement('li');
  li.className = 'avatar';
  li.dataset.user = name;
  li.dataset.connection = member.connection;
  paintUserColor(li, user.color);
  if (member.connection === myConnection) li.classList.add('is-me');
  if (member.state && member.state.status === 'away') li.classList.add('is-away');
  const label = memberLabel(member);
  li.title = label;
  li.setAttribute('aria-label', label);

  const letters = document.createElement('span');
  letters.className = 'avatar-initials';
  letters.textContent = initials(name);
  li.append(letters);

  const src = safeImageUrl(user.avatar);
  if (src) {
    const img = document.createElement('img');
    img.className = 'avatar-image';
    img.alt = '';
    img.src = src;
    img.referrerPolicy = 'no-referrer';
    // A broken avatar URL falls back to the initials underneath.
    img.addEventListener('error', () => img.remove());
    li.append(img);
  }
  return li;
}

function renderMembers() {
  const members = room ? Array.from(room.members || []) : [];
  // Put this tab first so "you" stays in one place while others come and go.
  members.sort((a, b) => (b.connection === myConnection) - (a.connection === myConnection));

  const items = members.slice(0, MAX_AVATARS).map(avatarElement);
  const rest = members.slice(MAX_AVATARS);
  if (rest.length) {
    const more = document.createElement('li');
    more.className = 'avatar avatar-more';
    more.textContent = `+${rest.length}`;
    more.title = rest.map(memberLabel).join('\n');
    items.push(more);
  }
  ui.members.replaceChildren(...items);
  ui.memberCount.textContent = room ? `${numberFormat.format(members.length)} online` : '';
  ui.memberCount.dataset.count = String(members.length);
  ui.members.dataset.count = String(members.length);
}

async function copyLink() {
  const url = shareUrl();
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch {
    // The async clipboard needs a secure context and permission; the old
    // execCommand path still works on plain http.
    const field = document.createElement('textarea');
    field.value = url;
    field.setAttribute('readonly', '');
    field.style.cssText = 'position:fixed;top:-100px;opacity:0';
    document.body.append(field);
    field.select();
    try { copied = document.execCommand('copy'); } catch { copied = false; }
    field.remove();
  }
  if (copied) {
    ui.copyLink.classList.add('is-copied');
    setTimeout(() => ui.copyLink.classList.remove('is-copied'), 1600);
    toast('Link copied. Send it to anyone who should join.');
  } else {
    toast(`Copy this link: ${url}`, { duration: 8000 });
  }
}

// ---------------------------------------------------------------------------
// Shared values: title (register), views (g_counter), tags (or_set)

function renderValue(name, value) {
  if (name === 'title') renderTitle(value);
  else if (name === 'views') renderViews(value);
  else if (name === 'tags') renderTags(value);
}

function renderAllValues() {
  if (!room || !room.values) return;
  for (const [name, entry] of room.values) renderValue(name, entry && entry.value);
}

function renderTitle(value) {
  sharedTitle = typeof value === 'string' ? value : value == null ? '' : String(value);
  // Never overwrite what someone is typing; their blur decides (see commitTitle).
  if (document.activeElement !== ui.title) ui.title.value = sharedTitle;
  document.title = `${sharedTitle || 'Untitled'} · ${roomName} · Chorus`;
}

function commitTitle() {
  const next = ui.title.value.replace(/\s+/g, ' ').trim();
  const untouched = titleAtFocus !== null && next === titleAtFocus.replace(/\s+/g, ' ').trim();
  titleAtFocus = null;
  if (untouched || next === sharedTitle || !room) {
    // Someone else may have renamed the document while this field had focus.
    ui.title.value = sharedTitle;
    return;
  }
  ui.title.value = next;
  guard(room.updateValue('title', 'register', { op: 'set', value: next }));
}

function renderViews(value) {
  const n = Number(value) || 0;
  ui.views.dataset.count = String(n);
  ui.viewsText.textContent = plural(n, 'view', 'views');
}

function renderTags(value) {
  currentTags = Array.isArray(value) ? value.filter((t) => typeof t === 'string') : [];
  const items = currentTags.map((tag) => {
    const li = document.createElement('li');
    li.className = 'tag';
    li.dataset.tag = tag;
    const text = document.createElement('span');
    text.className = 'tag-text';
    text.textContent = tag;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'tag-remove';
    remove.dataset.testid = 'tag-remove';
    remove.setAttribute('aria-label', `Remove tag ${tag}`);
    remove.title = `Remove “${tag}”`;
    remove.innerHTML = '<svg class="icon" aria-hidden="true"><use href="#i-x"/></svg>';
    li.append(text, remove);
    return li;
  });
  ui.tagList.replaceChildren(...items);
}

function addTag() {
  const tag = Array.from(ui.tagInput.value.replace(/\s+/g, ' ').trim()).slice(0, MAX_TAG_LENGTH).join('');
  ui.tagInput.value = '';
  if (!tag || !room) return;
  if (currentTags.includes(tag)) {
    // Already there: point at it rather than sending a no-op change.
    const chip = Array.from(ui.tagList.children).find((li) => li.dataset.tag === tag);
    if (chip) {
      chip.classList.remove('is-flashing');
      void chip.offsetWidth; // restart the animation
      chip.classList.add('is-flashing');
    }
    return;
  }
  guard(room.updateValue('tags', 'or_set', { op: 'add', element: tag }));
}

// ---------------------------------------------------------------------------
// The editor: the textarea bound to the shared document by @chorus/textarea
// (local edits, remote changes, IME, carets with names, server-side undo).

const editor = ui.editor;
let binding = null;

async function runHistory(kind) {
  if (!binding) return;
  const done = await (kind === 'undo' ? binding.undo() : binding.redo());
  if (!done) toast(kind === 'undo' ? 'Nothing to undo' : 'Nothing to redo', { duration: 1600 });
}

function attachDoc(opened) {
  doc = opened;
  binding = bindTextarea(editor, doc, { onError: reportError });
  editor.readOnly = false;
  editor.placeholder = 'Start typing. Everyone in this room sees it as you type.';
  doc.on('change', renderStats);
  doc.on('reset', onDocReset);
  // Edits the server refuses for good (too large, say); the SDK already took
  // the server's text back.
  doc.on('error', reportError);
  updateControls();
  renderStats();
}

function onDocReset(info) {
  // If the server could not take our unsent edits (protocol.md, "Recovery"),
  // say so rather than silently dropping work.
  const lost = (info && info.lostEdits) || 0;
  if (lost > 0) {
    toast(`The document was reloaded from the server; ${plural(lost, 'recent edit', 'recent edits')} could not be kept.`, {
      kind: 'error',
      duration: 7000,
    });
  }
}

let lastStatsKey = '';
function renderStats() {
  if (!doc) return;
  const text = doc.text;
  const key = `${doc.version}:${text.length}:${hash32(text.slice(0, 64))}`;
  if (key === lastStatsKey) return;
  lastStatsKey = key;
  const characters = Array.from(text).length;
  const words = (text.match(/\S+/g) || []).length;
  ui.stats.textContent = `${plural(words, 'word', 'words')} · ${plural(characters, 'character', 'characters')} · v${doc.version}`;
}

// ---------------------------------------------------------------------------
// Name dialog

function openNameDialog() {
  ui.nameInput.value = me.name || identity.name;
  ui.nameDialog.returnValue = '';
  ui.nameDialog.showModal();
  ui.nameInput.select();
}

function onNameDialogClose() {
  if (ui.nameDialog.returnValue !== 'save') return;
  const name = cleanName(ui.nameInput.value);
  if (!name || name === me.name) return;
  storage.set(STORAGE_KEYS.name, name);
  // The name is part of the connection (dev mode's ?name=), so reconnect by
  // reloading; drop URL overrides so the stored identity is used.
  const url = new URL(location.href);
  url.searchParams.delete('name');
  url.searchParams.delete('user');
  location.assign(url.href);
}

// ---------------------------------------------------------------------------
// Wiring

function bindUi() {
  ui.roomName.textContent = roomName;
  ui.roomName.title = roomName;
  ui.newRoom.href = `/?room=${encodeURIComponent(randomRoomName())}`;
  ui.copyLink.addEventListener('click', copyLink);
  ui.me.addEventListener('click', openNameDialog);
  ui.nameRandom.addEventListener('click', () => {
    ui.nameInput.value = randomName();
    ui.nameInput.focus();
  });
  ui.nameDialog.addEventListener('close', onNameDialogClose);

  ui.title.addEventListener('focus', () => { titleAtFocus = ui.title.value; });
  ui.title.addEventListener('blur', commitTitle);
  ui.title.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      ui.title.blur();
    } else if (event.key === 'Escape') {
      ui.title.value = sharedTitle;
      titleAtFocus = sharedTitle;
      ui.title.blur();
    }
  });

  ui.tagInput.addEventListener('keydown', (event) => {
    if (event.isComposing) return;
    if (event.key === 'Enter' || event.key === ',') {
      event.preventDefault();
      addTag();
    }
  });
  ui.tagList.addEventListener('click', (event) => {
    const button = event.target.closest('.tag-remove');
    if (!button || !room) return;
    const tag = button.closest('.tag').dataset.tag;
    guard(room.updateValue('tags', 'or_set', { op: 'remove', element: tag }));
  });

  ui.undo.addEventListener('click', () => { runHistory('undo'); editor.focus(); });
  ui.redo.addEventListener('click', () => { runHistory('redo'); editor.focus(); });

  document.addEventListener('visibilitychange', () => {
    if (room) {
      try {
        guard(room.setPresence({ status: document.hidden ? 'away' : 'active' }));
      } catch (err) {
        console.warn('[chorus demo] setPresence failed', err);
      }
    }
  });

  renderMe();
  renderViews(0);
  renderState();
  document.title = `${roomName} · Chorus`;
  // Acks move the version without any event the page listens to.
  setInterval(renderStats, 1000);
}

async function start() {
  bindUi();

  if (!ROOM_NAME_RE.test(roomName)) {
    showBanner(`“${roomName}” is not a valid room name. Use 1 to 128 letters, digits or _ . : / @ ~ -`);
    ui.state.textContent = 'offline';
    ui.state.dataset.state = 'closed';
    editor.placeholder = 'Pick another room to start writing.';
    return;
  }

  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
  client = connect(wsUrl, { user: identity.id, name: identity.name });
  client.on('state', renderState);
  client.on('pending', onPending);
  client.on('welcome', (welcome) => {
    myConnection = welcome.connection;
    if (welcome.user) me = { ...me, ...welcome.user };
    renderMe();
    renderMembers();
  });
  client.on('error', (err) => {
    if (err && err.code === 'unauthorized') {
      unauthorized = true;
      showBanner(UNAUTHORIZED_MESSAGE);
    } else if (err && SELF_HEALING_ERRORS.has(err.code)) {
      console.info('[chorus demo]', err.code, err.message);
    } else {
      // Failed requests also reject their promise; toast() shows it once.
      reportError(err);
    }
  });
  renderState();

  try {
    room = await client.join(roomName, { status: document.hidden ? 'away' : 'active' });
  } catch (err) {
    // After a refused token the join fails with "closed"; the banner already
    // says why.
    if (!unauthorized) showBanner(`Could not join “${roomName}”: ${describeError(err)}`);
    editor.placeholder = 'Could not join this room.';
    return;
  }
  room.on('members', renderMembers);
  // A resynchronising `joined` replaces the values: a value the room no
  // longer has (the server restarted without its store) comes as removed.
  room.on('value', (value) => renderValue(value.name, value.removed ? undefined : value.value));
  room.on('error', reportError);
  updateControls();
  renderMembers();
  renderAllValues();

  // Once per page load, not per reconnect: a counter cannot be safely resent.
  // A lost increment is not worth a toast.
  room.updateValue('views', 'g_counter', { op: 'increment', by: 1 })
    .catch((err) => console.info('[chorus demo] view not counted', err));

  if (identity.fresh) {
    toast(`You joined as ${identity.name}.`, {
      action: { label: 'Change name', run: openNameDialog },
      duration: 6000,
    });
  }

  try {
    attachDoc(await room.openDoc(DOC_NAME));
  } catch (err) {
    showBanner(`Could not open the document: ${describeError(err)}`);
    editor.placeholder = 'The document could not be opened.';
  }
}

start();
