// Chorus demo page: one shared document per room, with live carets, presence,
// a shared title, a view counter and tags. Served by the Chorus server itself
// (no build step), so this file is plain ES2020 and only imports the SDK.
import { connect } from '/sdk/chorus.js';

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
  reconnecting: 'reconnecting',
  closed: 'offline',
};
const STATE_HINTS = {
  connecting: 'Connecting to the Chorus server…',
  open: 'Connected: changes are shared live',
  reconnecting: 'Connection lost: your edits are kept and sent when it comes back',
  closed: 'Not connected to the server',
};
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
  overlay: $('editor-overlay'),
  overlayContent: $('overlay-content'),
  mirror: $('mirror'),
  marks: $('marks'),
  toasts: $('toasts'),
  newRoom: $('new-room'),
  nameDialog: $('name-dialog'),
  nameInput: $('name-input'),
  nameRandom: $('name-random'),
};

const numberFormat = new Intl.NumberFormat();

// ---------------------------------------------------------------------------
// Small helpers

// localStorage throws in some privacy modes; the page still works without it,
// the identity just does not survive a reload.
const storage = {
  get(key) {
    try { return localStorage.getItem(key); } catch { return null; }
  },
  set(key, value) {
    try { localStorage.setItem(key, value); } catch { /* not persisted */ }
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
// Room and identity, from the URL and localStorage

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

  // URL overrides are for tests and demos with several people in one browser:
  // two tabs with different ?name= must be different users (own colour, own
  // undo history), so the id follows the name rather than localStorage.
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

function renderState() {
  const state = client ? client.state : 'connecting';
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
// The editor
//
// The textarea owns input (IME, emoji, spellcheck, accessibility); the
// document's truth lives in the SDK. `shadow` is the text both agree on: every
// local change is found by diffing the textarea against it, and every remote
// change is applied to both.

const editor = ui.editor;
let shadow = '';
let composing = false;
// Remote ops that arrived while an IME composition owned the textarea; they are
// merged when it ends, because changing the value mid-composition cancels it.
let pendingRemote = [];
let lastSentSelection = null;
// Undo/redo requests awaiting their answer: while there are any, an op of our
// own history moves the caret to where it acted.
const historyRequests = [];

/** The single delete + insert turning `before` into `after` (UTF-16 indices). */
function diffText(before, after) {
  const max = Math.min(before.length, after.length);
  let start = 0;
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  // The SDK counts code points: never cut a surrogate pair in two.
  if (start > 0 && isHighSurrogate(before.charCodeAt(start - 1))) start--;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start
    && before.charCodeAt(endBefore - 1) === after.charCodeAt(endAfter - 1)) {
    endBefore--;
    endAfter--;
  }
  if (endBefore < before.length && isLowSurrogate(before.charCodeAt(endBefore))) {
    endBefore++;
    endAfter++;
  }
  return { index: start, removed: endBefore - start, inserted: after.slice(start, endAfter) };
}

function isHighSurrogate(code) { return code >= 0xd800 && code <= 0xdbff; }
function isLowSurrogate(code) { return code >= 0xdc00 && code <= 0xdfff; }

/**
 * Where position `pos` ends up after a remote op. `stickAfter` decides an insert
 * exactly at `pos`: a caret stays before someone else's insert (as the server
 * moves selections), but a selection's start moves past it so the selection
 * does not swallow their text.
 */
function mapPosition(pos, op, stickAfter) {
  if (op.type === 'insert') {
    return pos > op.index || (stickAfter && pos === op.index) ? pos + op.text.length : pos;
  }
  if (op.type === 'delete') {
    if (pos <= op.index) return pos;
    return pos >= op.index + op.length ? pos - op.length : op.index;
  }
  return pos;
}

function applyOpToString(text, op) {
  if (op.type === 'insert') return text.slice(0, op.index) + op.text + text.slice(op.index);
  if (op.type === 'delete') return text.slice(0, op.index) + text.slice(op.index + op.length);
  return text;
}

/** Replace the textarea's text without moving the view or losing the selection. */
function writeEditor(value, start, end, direction) {
  const { scrollTop, scrollLeft } = editor;
  editor.value = value;
  shadow = value;
  const len = value.length;
  editor.setSelectionRange(Math.min(start, len), Math.min(end, len), direction || 'none');
  editor.scrollTop = scrollTop;
  editor.scrollLeft = scrollLeft;
}

/** Send what the user typed since the last sync to the SDK. */
function syncLocal() {
  if (!doc || composing) return;
  const next = editor.value;
  if (next === shadow) return;
  const change = diffText(shadow, next);
  shadow = next;
  try {
    if (change.removed) guard(doc.delete(change.index, change.removed));
    if (change.inserted) guard(doc.insert(change.index, change.inserted));
  } catch (err) {
    reportError(err);
  }
  resyncIfDiverged();
  scheduleRender();
}

/** Safety net: if the textarea and the SDK ever disagree, the SDK wins. */
function resyncIfDiverged() {
  // Mid-composition the textarea legitimately lags (see pendingRemote).
  if (!doc || composing || doc.text === shadow) return;
  console.warn('[chorus demo] editor and document diverged; reloading the text');
  const { selectionStart, selectionEnd, selectionDirection } = editor;
  writeEditor(doc.text, selectionStart, selectionEnd, selectionDirection);
}

function onDocChange(event) {
  const ops = (event && event.ops) || [];
  if (event && event.reset) {
    // The SDK replaced its copy with the server's (see onDocReset); the ops are
    // "delete everything, insert everything", which would throw the caret to
    // the start, so keep the caret's offset instead.
    composing = false;
    pendingRemote = [];
    const { selectionStart, selectionEnd, selectionDirection } = editor;
    writeEditor(doc.text, selectionStart, selectionEnd, selectionDirection);
    lastSentSelection = null;
    scheduleRender();
    return;
  }
  if (!event || !event.remote) {
    // Our own edit, already in the textarea. Check agreement once the current
    // delete + insert pair has been handed over, not between the two calls.
    queueMicrotask(resyncIfDiverged);
    scheduleRender();
    return;
  }
  if (composing) {
    pendingRemote.push(...ops);
    scheduleRender();
    return;
  }
  // Our own undo/redo comes back as an op of our history's submitter,
  // "h<length of the user id in bytes>:<user id>".
  const fromOurHistory = historyRequests.length > 0 && event.client === `h${new TextEncoder().encode(me.id).length}:${me.id}`;
  applyRemoteOps(ops, fromOurHistory);
}

function applyRemoteOps(ops, fromOurHistory = false) {
  if (!ops.length) {
    resyncIfDiverged();
    scheduleRender();
    return;
  }
  // `input` events keep shadow equal to the textarea outside compositions, and
  // compositions queue remote ops instead of coming here, so the ops apply to
  // exactly the text on screen.
  const before = shadow;
  const direction = editor.selectionDirection;
  let start = editor.selectionStart;
  let end = editor.selectionEnd;
  const collapsed = start === end;
  let value = before;
  let lastTouched = null;
  let touchesAboveCaret = false;
  for (const op of ops) {
    if (op.index < start) touchesAboveCaret = true;
    value = applyOpToString(value, op);
    start = mapPosition(start, op, !collapsed);
    end = mapPosition(end, op, false);
    lastTouched = op.type === 'insert' ? op.index + op.text.length : op.index;
  }
  if (end < start) end = start;

  // Put the caret where our own undo/redo acted, as a local undo would.
  const history = fromOurHistory && lastTouched !== null;
  if (history) start = end = lastTouched;

  // Keep the caret's line still on screen when text above it changes, so the
  // view does not jump while someone types higher up in the document. (After
  // our own undo the caret jumps on purpose; keepCaretVisible handles that.)
  const caretBefore = touchesAboveCaret && !history ? visibleCaretTop(before, editor.selectionStart) : null;

  writeEditor(value, start, end, direction);

  if (caretBefore !== null) {
    const caretAfter = caretTopIn(value, start);
    if (caretAfter !== null) editor.scrollTop += caretAfter - caretBefore;
  }
  if (history && document.activeElement === editor) keepCaretVisible();

  if (lastSentSelection) {
    // The server moves our published selection through the same ops; follow it
    // so an unchanged selection is not sent again.
    lastSentSelection = {
      anchor: ops.reduce((pos, op) => mapPosition(pos, op, false), lastSentSelection.anchor),
      head: ops.reduce((pos, op) => mapPosition(pos, op, false), lastSentSelection.head),
    };
  }
  resyncIfDiverged();
  if (history) sendSelection();
  scheduleRender();
}

function onCompositionEnd() {
  composing = false;
  const queued = pendingRemote;
  pendingRemote = [];
  if (!doc) return;
  if (!queued.length) {
    syncLocal();
    sendSelection();
    return;
  }
  // Others edited while the IME was composing: move the composed change
  // through their ops, then show the merged text.
  const change = diffText(shadow, editor.value);
  let from = change.index;
  let to = change.index + change.removed;
  for (const op of queued) {
    from = mapPosition(from, op, false);
    to = mapPosition(to, op, false);
  }
  if (to < from) to = from;
  try {
    if (to > from) guard(doc.delete(from, to - from));
    if (change.inserted) guard(doc.insert(from, change.inserted));
  } catch (err) {
    reportError(err);
  }
  const caret = from + change.inserted.length;
  writeEditor(doc.text, caret, caret, 'none');
  sendSelection();
  scheduleRender();
}

function onDocReset(info) {
  // The text itself was taken over in onDocChange. If the server could not
  // take our unsent edits (protocol.md, "Recovery"), say so rather than
  // silently dropping work.
  resyncIfDiverged();
  const lost = (info && info.lostEdits) || 0;
  if (lost > 0) {
    toast(`The document was reloaded from the server; ${plural(lost, 'recent edit', 'recent edits')} could not be kept.`, {
      kind: 'error',
      duration: 7000,
    });
  }
}

function sendSelection() {
  // Positions are only meaningful once the SDK has every local change.
  if (!doc || composing || pendingRemote.length || editor.value !== shadow) return;
  const { selectionStart, selectionEnd } = editor;
  const backward = editor.selectionDirection === 'backward';
  const anchor = backward ? selectionEnd : selectionStart;
  const head = backward ? selectionStart : selectionEnd;
  if (lastSentSelection && lastSentSelection.anchor === anchor && lastSentSelection.head === head) return;
  lastSentSelection = { anchor, head };
  try {
    guard(doc.setSelection(anchor, head));
  } catch (err) {
    // Typically "not connected yet": forget it so the next event retries.
    lastSentSelection = null;
    console.warn('[chorus demo] setSelection failed', err);
  }
}

async function runHistory(kind) {
  if (!doc) return;
  syncLocal();
  const request = { kind };
  historyRequests.push(request);
  try {
    const done = await (kind === 'undo' ? doc.undo() : doc.redo());
    if (!done) toast(kind === 'undo' ? 'Nothing to undo' : 'Nothing to redo', { duration: 1600 });
  } catch (err) {
    reportError(err);
  } finally {
    historyRequests.splice(historyRequests.indexOf(request), 1);
  }
}

function onEditorKeydown(event) {
  if (event.isComposing || event.altKey || !(event.ctrlKey || event.metaKey)) return;
  // event.code keeps the shortcuts working on non-Latin keyboard layouts.
  const key = /^[a-z]$/i.test(event.key) ? event.key.toLowerCase() : event.code.replace(/^Key/, '').toLowerCase();
  if (key === 'z') {
    // The browser's own undo would rewind only this textarea, out of step
    // with the shared document.
    event.preventDefault();
    runHistory(event.shiftKey ? 'redo' : 'undo');
  } else if (key === 'y' && event.ctrlKey) {
    event.preventDefault();
    runHistory('redo');
  }
}

function onEditorBeforeInput(event) {
  // Undo/redo from the context or Edit menu arrives here instead of keydown.
  if (event.inputType === 'historyUndo' || event.inputType === 'historyRedo') {
    event.preventDefault();
    runHistory(event.inputType === 'historyUndo' ? 'undo' : 'redo');
  }
}

function attachDoc(opened) {
  doc = opened;
  writeEditor(doc.text, 0, 0, 'none');
  editor.readOnly = false;
  editor.placeholder = 'Start typing. Everyone in this room sees it as you type.';
  doc.on('change', onDocChange);
  doc.on('selections', scheduleRender);
  doc.on('reset', onDocReset);
  // Edits the server refuses for good (too large, say); the SDK already took
  // the server's text back.
  doc.on('error', reportError);
  updateControls();
  scheduleRender();
}

// ---------------------------------------------------------------------------
// Overlay: other people's carets and selections
//
// The mirror is an invisible copy of the textarea's text with identical box
// metrics, so a DOM Range over it yields the on-screen rectangles of any text
// position. It scrolls with the textarea through a transform.

const mirrorText = document.createTextNode('');
ui.mirror.append(mirrorText);
const measureRange = document.createRange();
// Selections are redrawn from scratch; carets live in their own layer and are
// kept per connection, so that moving one is a style change the CSS transition
// can animate (re-inserting the element would skip the animation).
const selectionLayer = document.createElement('div');
const caretLayer = document.createElement('div');
ui.marks.append(selectionLayer, caretLayer);
const caretElements = new Map(); // connection -> .caret element
let renderQueued = false;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  const run = () => {
    renderQueued = false;
    renderOverlay();
  };
  // rAF does not fire in background tabs; a timer still keeps them current.
  if (document.hidden) setTimeout(run, 50);
  else requestAnimationFrame(run);
}

function setMirror(text) {
  // A trailing zero-width space gives a final empty line a line box to measure.
  const content = `${text}\u200b`;
  if (mirrorText.data !== content) mirrorText.data = content;
  const width = `${editor.clientWidth}px`;
  if (ui.mirror.style.width !== width) ui.mirror.style.width = width;
}

function lineHeight() {
  const style = getComputedStyle(editor);
  const value = parseFloat(style.lineHeight);
  return Number.isFinite(value) ? value : parseFloat(style.fontSize) * 1.6;
}

/** Caret box of text position `pos`, relative to the mirror's top-left corner. */
function caretBox(pos) {
  const len = mirrorText.data.length - 1; // without the zero-width space
  const at = Math.max(0, Math.min(pos, len));
  const origin = ui.mirror.getBoundingClientRect();
  measureRange.setStart(mirrorText, at);
  measureRange.setEnd(mirrorText, at);
  let rect = measureRange.getClientRects()[0];
  let left = rect ? rect.left : null;
  if (!rect || (rect.width === 0 && rect.height === 0 && rect.top === 0)) {
    // Collapsed ranges have no box in some engines; use the next character's.
    measureRange.setEnd(mirrorText, at + 1);
    rect = measureRange.getClientRects()[0];
    left = rect ? rect.left : null;
  }
  if (!rect) return null;
  const height = lineHeight();
  return {
    left: left - origin.left,
    top: rect.top - origin.top + rect.height / 2 - height / 2,
    height,
  };
}

function caretTopIn(text, pos) {
  setMirror(text);
  const box = caretBox(pos);
  return box ? box.top : null;
}

/** The caret's top if it is on screen, measured in `text`; else null. */
function visibleCaretTop(text, pos) {
  if (editor.scrollHeight <= editor.clientHeight) return null;
  const top = caretTopIn(text, pos);
  if (top === null) return null;
  const visible = top >= editor.scrollTop && top < editor.scrollTop + editor.clientHeight;
  return visible ? top : null;
}

function keepCaretVisible() {
  const top = caretTopIn(editor.value, editor.selectionEnd);
  if (top === null) return;
  const height = lineHeight();
  if (top < editor.scrollTop) editor.scrollTop = top - height;
  else if (top + height > editor.scrollTop + editor.clientHeight) editor.scrollTop = top + 2 * height - editor.clientHeight;
}

function renderOverlay() {
  const width = editor.clientWidth;
  ui.overlay.style.width = `${width}px`;
  ui.overlay.style.height = `${editor.clientHeight}px`;
  ui.overlayContent.style.transform = `translate(${-editor.scrollLeft}px, ${-editor.scrollTop}px)`;
  setMirror(editor.value);
  renderStats();

  // While a composition is in progress or remote ops wait, the SDK's positions
  // do not match the textarea; skip drawing rather than draw in the wrong place.
  const selections = doc && !composing && !pendingRemote.length && editor.value === shadow
    ? doc.remoteSelections() || []
    : [];
  const origin = ui.mirror.getBoundingClientRect();
  const len = editor.value.length;
  const height = lineHeight();
  const highlights = document.createDocumentFragment();
  const seen = new Set();

  for (const selection of selections) {
    const user = selection.user || {};
    const name = displayName(user);
    const color = safeColor(user.color);
    const anchor = clamp(selection.anchor, len);
    const head = clamp(selection.head, len);

    if (anchor !== head) {
      measureRange.setStart(mirrorText, Math.min(anchor, head));
      measureRange.setEnd(mirrorText, Math.max(anchor, head));
      for (const rect of measureRange.getClientRects()) {
        const box = document.createElement('div');
        box.className = 'remote-selection';
        box.dataset.user = name;
        box.style.setProperty('--user-color', color);
        box.style.left = `${rect.left - origin.left}px`;
        box.style.top = `${rect.top - origin.top + rect.height / 2 - height / 2}px`;
        // A selected line break has no width; give it a sliver so an empty
        // selected line still shows.
        box.style.width = `${Math.max(rect.width, 4)}px`;
        box.style.height = `${height}px`;
        highlights.append(box);
      }
    }

    const caretPos = caretBox(head);
    if (!caretPos) continue;
    const key = String(selection.connection);
    seen.add(key);
    let caret = caretElements.get(key);
    if (!caret) {
      caret = document.createElement('div');
      caret.className = 'caret';
      const label = document.createElement('span');
      label.className = 'caret-label';
      caret.append(label);
      caretElements.set(key, caret);
      caretLayer.append(caret);
    }
    caret.dataset.user = name;
    caret.dataset.connection = key;
    caret.firstChild.textContent = name;
    paintUserColor(caret, color);
    caret.style.left = `${caretPos.left}px`;
    caret.style.top = `${caretPos.top}px`;
    caret.style.height = `${caretPos.height}px`;
    // Labels sit above the caret; on the first visible line they would be cut
    // off, and near the right edge they would overflow, so flip them.
    caret.classList.toggle('caret-below', caretPos.top - editor.scrollTop < 20);
    caret.classList.toggle('caret-flip', caretPos.left > width - 140);
  }

  for (const [key, caret] of caretElements) {
    if (!seen.has(key)) {
      caret.remove();
      caretElements.delete(key);
    }
  }
  selectionLayer.replaceChildren(highlights);
}

function clamp(pos, len) {
  const n = Number(pos);
  return Number.isFinite(n) ? Math.max(0, Math.min(Math.trunc(n), len)) : 0;
}

let lastStatsKey = '';
function renderStats() {
  if (!doc) return;
  const text = shadow;
  const key = `${doc.version}:${text.length}:${hash32(text.slice(0, 64))}`;
  if (key === lastStatsKey) return;
  lastStatsKey = key;
  let lowSurrogates = 0;
  for (let i = 0; i < text.length; i++) if (isLowSurrogate(text.charCodeAt(i))) lowSurrogates++;
  const characters = text.length - lowSurrogates;
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

  editor.addEventListener('input', (event) => {
    if (event.isComposing || composing) {
      scheduleRender();
      return;
    }
    syncLocal();
    sendSelection();
  });
  editor.addEventListener('compositionstart', () => {
    syncLocal();
    composing = true;
  });
  editor.addEventListener('compositionend', onCompositionEnd);
  editor.addEventListener('keydown', onEditorKeydown);
  editor.addEventListener('beforeinput', onEditorBeforeInput);
  for (const type of ['select', 'selectionchange', 'keyup', 'mouseup', 'focus']) {
    editor.addEventListener(type, sendSelection);
  }
  editor.addEventListener('scroll', scheduleRender, { passive: true });
  new ResizeObserver(scheduleRender).observe(editor);

  document.addEventListener('visibilitychange', () => {
    if (room) {
      try {
        guard(room.setPresence({ status: document.hidden ? 'away' : 'active' }));
      } catch (err) {
        console.warn('[chorus demo] setPresence failed', err);
      }
    }
    if (!document.hidden) scheduleRender();
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
  room.on('members', () => {
    renderMembers();
    // A resynchronising `joined` replaces members and values together.
    renderAllValues();
    scheduleRender();
  });
  room.on('value', (value) => renderValue(value.name, value.value));
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
