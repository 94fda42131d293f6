// The browser facilities the library uses, gathered so tests can give their own.

/** The part of `EventSource` the library uses. */
export interface EventSourceLike {
  readonly readyState: number;
  onerror: ((event: Event) => void) | null;
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
}

/** The part of `BroadcastChannel` the library uses. */
export interface ChannelLike {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

/** The part of the Web Locks API (`navigator.locks`) the library uses. */
export interface LocksLike {
  request(name: string, callback: () => Promise<void>): Promise<void>;
}

/** Where the library finds timers, randomness, streams, channels and locks. */
export interface Env {
  EventSource: new (url: string) => EventSourceLike;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Milliseconds since the epoch. */
  now(): number;
  /** A number in [0, 1). */
  random(): number;
  /** Absent where tabs cannot share a connection. */
  BroadcastChannel?: new (name: string) => ChannelLike;
  locks?: LocksLike;
  /** The page's address, against which a relative Herald URL is resolved. */
  location?: string;
  /** Calls `callback` when the page goes away (a closed tab or a navigation). */
  onPageHide?(callback: () => void): void;
}

/** The browser's own facilities. */
export function browserEnv(): Env {
  const g = globalThis as typeof globalThis & {
    navigator?: { locks?: LocksLike };
    location?: { href: string };
  };
  return {
    EventSource: g.EventSource as unknown as Env["EventSource"],
    setTimeout: (callback, ms) => g.setTimeout(callback, ms),
    clearTimeout: (handle) => g.clearTimeout(handle as ReturnType<typeof setTimeout>),
    now: () => Date.now(),
    random: () => Math.random(),
    BroadcastChannel: g.BroadcastChannel as unknown as Env["BroadcastChannel"],
    locks: g.navigator?.locks,
    location: g.location?.href,
    onPageHide: (callback) => g.addEventListener?.("pagehide", callback),
  };
}

/** Whether event id `a` comes after `b` in the log (ids are decimal sequence numbers). */
export function isAfter(a: string, b: string | null): boolean {
  if (b === null || b === "") return true;
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    return a.length !== b.length ? a.length > b.length : a > b;
  }
  return a !== b;
}

/** A random identifier for a tab or a subscription. */
export function randomId(env: Env): string {
  return Math.floor(env.random() * 2 ** 52).toString(36) + env.now().toString(36);
}
