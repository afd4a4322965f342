// Type declarations for @chorus/react.

import type { Client, ClientState, ConnectOptions, CursorState, Json, Member, Room, TextDoc } from '@chorus/client';
import type { ReactNode } from 'react';

export interface ChorusProviderProps {
  /** A client to share (kept open when the provider unmounts)... */
  client?: Client;
  /** ...or where to connect one (closed when the provider unmounts). */
  url?: string;
  /** Options for that connection (read once). */
  options?: ConnectOptions;
  children?: ReactNode;
}

/** Gives its children a Chorus client. */
export function ChorusProvider(props: ChorusProviderProps): ReactNode;

/** The provider's client (null while a provider with a `url` is connecting). */
export function useClient(): Client | null;

/** Joins the room while mounted; the Room once joined, null until then. */
export function useRoom(name: string, presence?: Json): Room | null;

/** Opens the document while mounted; the TextDoc once open, null until then. */
export function useDoc(room: Room | null, name: string): TextDoc | null;

/** The room's members, oldest join first; re-renders when they change. */
export function useMembers(room: Room | null): readonly Member[];

/** The other connections' cursors; re-renders when one moves, appears or goes. */
export function useCursors(room: Room | null): readonly CursorState[];

/** A shared value's plain value (undefined while the room has none); re-renders only when it changes. */
export function useValue<T extends Json = Json>(room: Room | null, name: string): T | undefined;

/** The document's text ('' until open) and the TextDoc; re-renders on every change. */
export function useText(room: Room | null, name: string): [string, TextDoc | null];

/** Changes waiting for the server (for a "saving…" indicator). */
export function usePending(): number;

/** The client's connection state. */
export function useConnectionState(): ClientState;
