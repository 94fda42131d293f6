// herald-client: subscribe to Herald from a browser, reliably.
//
//   import { subscribe } from "herald-client";
//   const sub = subscribe<{ text: string }>(["rooms/42"], { credential: () => getToken() });
//   sub.on("event", (event) => console.log(event.type, event.data.text));
//
// It reconnects with the server's delay and a jittered back-off, resumes after the last event
// with the same client id, renews the credential before it expires, stops when the server says
// not to come back, receives events of every type, and shares one connection among the tabs
// of the browser (a leader tab holds it; the others get what they asked for from it).

import type {
  Closing,
  Connected,
  Envelope,
  JsonValue,
  PresenceChange,
  Reset,
} from "./protocol.js";
import { browserEnv, type Env, isAfter } from "./env.js";
import { type CredentialProvider, type State, Stream, type StreamListener, type StreamOptions } from "./connection.js";
import { canShare, groupName, Member } from "./share.js";

export * from "./protocol.js";
export type { CredentialProvider, State } from "./connection.js";
export type { Env } from "./env.js";
export { backoff, eventsUrl, expiryOf } from "./connection.js";

/** An event as published, with its data typed. */
export type HeraldEvent<T = JsonValue> = Omit<Envelope, "data"> & { data: T };

/** What a subscription reports, by kind. */
export interface Handlers<T> {
  /** A published event of one of the topics (or sent to this client, its user or everyone). */
  event: (event: HeraldEvent<T>) => void;
  /** The stream opened (again). */
  connected: (connected: Connected) => void;
  /** Events were missed and cannot be replayed: the gap, said out loud. */
  reset: (reset: Reset) => void;
  /** The server is ending the stream, and says whether to come back. */
  closing: (closing: Closing) => void;
  /** A user came to or left one of the topics (with `presence: true`). */
  presence: (change: PresenceChange) => void;
  /** The stream's state changed. */
  state: (state: State, detail: string | null) => void;
}

export interface SubscribeOptions<T> {
  /** Herald's base URL; by default the page's own origin. */
  url?: string;
  /** Gives the credential; see {@link CredentialProvider}. Without one, the stream is anonymous. */
  credential?: CredentialProvider;
  /** A client id from an earlier `herald.connected`, to keep its identity. */
  clientId?: string;
  /** Resume after this event id (one kept from an earlier visit, say). */
  lastEventId?: string;
  /** Also receive `herald.presence` for the topics. */
  presence?: boolean;
  /**
   * Share one connection with the other tabs (default `true`); `false` gives this subscription
   * its own. A string names the group: tabs signed in as different users must not share, so
   * give each user's tabs a group of their own.
   */
  share?: boolean | string;
  /** The longest wait between two reconnection attempts (default 30 s). */
  maxDelayMs?: number;
  /** Events kept while paused on a shared connection (default 10,000); past it, a gap is reported. */
  pauseBuffer?: number;
  onEvent?: Handlers<T>["event"];
  onConnected?: Handlers<T>["connected"];
  onReset?: Handlers<T>["reset"];
  onClosing?: Handlers<T>["closing"];
  onPresence?: Handlers<T>["presence"];
  onState?: Handlers<T>["state"];
  /** The browser facilities to use (tests give their own). */
  env?: Env;
}

type Listeners<T> = { [K in keyof Handlers<T>]: Set<Handlers<T>[K]> };

/** A subscription to some topics: a stream of typed events. */
export class Subscription<T = JsonValue> implements AsyncIterable<HeraldEvent<T>> {
  readonly topics: readonly string[];
  private readonly listeners: Listeners<T> = {
    event: new Set(),
    connected: new Set(),
    reset: new Set(),
    closing: new Set(),
    presence: new Set(),
    state: new Set(),
  };
  private readonly stream: Stream | null = null;
  private readonly member: Member | null = null;
  private currentState: State = "connecting";
  private lastDelivered: string | null = null;
  private paused = false;
  private held: HeraldEvent<T>[] = [];
  private overflowed: string | null = null;
  private readonly pauseBuffer: number;
  private readonly presence: boolean;
  private waiting: ((result: IteratorResult<HeraldEvent<T>>) => void)[] = [];
  private queue: HeraldEvent<T>[] | null = null;

  constructor(topics: string[], options: SubscribeOptions<T> = {}) {
    const env = options.env ?? browserEnv();
    this.topics = [...topics];
    this.presence = options.presence ?? false;
    this.pauseBuffer = options.pauseBuffer ?? 10_000;
    for (const [kind, handler] of [
      ["event", options.onEvent],
      ["connected", options.onConnected],
      ["reset", options.onReset],
      ["closing", options.onClosing],
      ["presence", options.onPresence],
      ["state", options.onState],
    ] as const) {
      if (handler) (this.listeners[kind] as Set<unknown>).add(handler);
    }
    const url = options.url ?? "";
    const streamOptions: StreamOptions = {
      url,
      topics: this.topics.slice(),
      presence: this.presence,
      clientId: options.clientId ?? null,
      lastEventId: options.lastEventId ?? null,
      credential: options.credential ?? null,
      maxDelayMs: options.maxDelayMs ?? 30_000,
    };
    const sink: StreamListener = {
      event: (envelope) => this.onEvent(envelope),
      connected: (connected) => this.emit("connected", connected),
      reset: (reset) => this.emit("reset", reset),
      closing: (closing) => this.emit("closing", closing),
      presence: (change) => {
        if (this.presence && this.topics.includes(change.topic)) this.emit("presence", change);
      },
      state: (state, detail) => {
        this.currentState = state;
        this.emit("state", state, detail);
        if (state === "closed") this.endIterators();
      },
    };
    const share = options.share ?? true;
    if (share !== false && canShare(env)) {
      const wants = { topics: [...new Set(this.topics)].sort(), presence: this.presence };
      this.member = new Member(env, groupName(env, url, share), wants, streamOptions, sink);
      env.onPageHide?.(() => this.close());
    } else {
      this.stream = new Stream(env, streamOptions, sink);
      this.stream.start();
    }
  }

  /** Where the stream stands. */
  get state(): State {
    return this.currentState;
  }

  /** The client id the server issued (kept across reconnections). */
  get clientId(): string | null {
    return this.stream?.clientId ?? this.member?.position.clientId ?? null;
  }

  /** The last event id received: keep it to resume from it later (`lastEventId`). */
  get lastEventId(): string | null {
    return this.stream?.lastEventId ?? this.member?.position.lastEventId ?? null;
  }

  /** Whether this subscription holds the connection its group shares. */
  get leader(): boolean {
    return this.member?.leader ?? false;
  }

  /** Calls `handler` for each report of `kind`; returns a function that stops it. */
  on<K extends keyof Handlers<T>>(kind: K, handler: Handlers<T>[K]): () => void {
    this.listeners[kind].add(handler);
    return () => this.listeners[kind].delete(handler);
  }

  /**
   * Stops delivering events until {@link resume}; none is lost. A connection of its own is
   * closed meanwhile and resumes after the last event; on a shared connection the events are
   * kept (up to `pauseBuffer`).
   */
  pause(): void {
    if (this.paused || this.currentState === "closed") return;
    this.paused = true;
    this.stream?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.overflowed !== null) {
      this.emit("reset", { reason: "history_expired", latest_id: this.overflowed });
      this.overflowed = null;
    }
    const held = this.held;
    this.held = [];
    for (const event of held) this.deliver(event);
    this.stream?.start();
  }

  /** Ends the subscription; a tab leading its group hands the connection to another. */
  close(): void {
    this.stream?.close();
    this.member?.close();
    if (this.currentState !== "closed") {
      this.currentState = "closed";
      this.emit("state", "closed", null);
    }
    this.endIterators();
  }

  /** The events, in order, until the subscription closes. */
  [Symbol.asyncIterator](): AsyncIterator<HeraldEvent<T>> {
    this.queue ??= [];
    return {
      next: () => {
        const queued = this.queue?.shift();
        if (queued) return Promise.resolve({ value: queued, done: false });
        if (this.currentState === "closed") return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiting.push(resolve));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private onEvent(envelope: Envelope): void {
    if (envelope.topic !== null && !this.topics.includes(envelope.topic)) return;
    if (!isAfter(envelope.id, this.lastDelivered)) return;
    this.lastDelivered = envelope.id;
    const event = envelope as HeraldEvent<T>;
    if (this.paused) {
      this.held.push(event);
      if (this.held.length > this.pauseBuffer) {
        // The oldest goes: the events after it are still delivered.
        this.overflowed = this.held.shift()?.id ?? null;
      }
      return;
    }
    this.deliver(event);
  }

  private deliver(event: HeraldEvent<T>): void {
    const waiter = this.waiting.shift();
    if (waiter) waiter({ value: event, done: false });
    else this.queue?.push(event);
    this.emit("event", event);
  }

  private emit<K extends keyof Handlers<T>>(kind: K, ...args: Parameters<Handlers<T>[K]>): void {
    for (const handler of this.listeners[kind]) {
      try {
        (handler as (...a: Parameters<Handlers<T>[K]>) => void)(...args);
      } catch (error) {
        // One failing handler does not stop the others or the stream.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  private endIterators(): void {
    for (const waiter of this.waiting.splice(0)) waiter({ value: undefined, done: true });
  }
}

/** Subscribes to `topics`; see {@link SubscribeOptions}. */
export function subscribe<T = JsonValue>(topics: string[], options: SubscribeOptions<T> = {}): Subscription<T> {
  return new Subscription<T>(topics, options);
}
