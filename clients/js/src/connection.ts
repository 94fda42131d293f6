// One stream from Herald: opens `/events`, reconnects with the server's delay and a jittered
// back-off, resumes after the last event id with the same client id, renews the credential,
// and stops for good when the server says not to come back.

import {
  CLOSING,
  CONNECTED,
  DEFAULT_EVENT_TYPE,
  PRESENCE,
  RESET,
  type Closing,
  type Connected,
  type Envelope,
  type PresenceChange,
  type Reset,
} from "./protocol.js";
import { type Env, type EventSourceLike, isAfter } from "./env.js";

/** Where a stream stands. */
export type State = "connecting" | "open" | "reconnecting" | "paused" | "closed";

/**
 * Gives the credential (a JWT) the stream is opened with, or `null` for none. Called before
 * the first connection, shortly before the credential expires, when the server closes the
 * stream because it expired, and after the server refused the stream. `renew` is true when the
 * current credential must not be given again; answering `null` then ends the stream.
 */
export type CredentialProvider = (renew: boolean) => string | null | undefined | Promise<string | null | undefined>;

/** What a stream reports, in the order it happened. */
export interface StreamListener {
  event(envelope: Envelope): void;
  connected(connected: Connected): void;
  reset(reset: Reset): void;
  closing(closing: Closing): void;
  presence(change: PresenceChange): void;
  state(state: State, detail: string | null): void;
}

/** What a stream asks for. */
export interface StreamWants {
  topics: string[];
  presence: boolean;
}

export interface StreamOptions extends StreamWants {
  /** Herald's base URL (`https://events.example.com`), or `""` for the page's own origin. */
  url: string;
  clientId: string | null;
  lastEventId: string | null;
  credential: CredentialProvider | null;
  /** The longest wait between two attempts. */
  maxDelayMs: number;
}

/** The delay before the first reconnection when the server has not said (it does in `retry_ms`). */
const DEFAULT_RETRY_MS = 3000;
/** How long before its expiry a credential is renewed, at most. */
const RENEW_AHEAD_MS = 60_000;

/** The `exp` claim of a JWT, in milliseconds, if it has one. */
export function expiryOf(token: string): number | null {
  const payload = token.split(".")[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** The `/events` URL for `wants`, keeping `clientId` and resuming after `lastEventId`. */
export function eventsUrl(
  base: string,
  wants: StreamWants,
  clientId: string | null,
  lastEventId: string | null,
  token: string | null,
): string {
  const query = new URLSearchParams();
  for (const topic of wants.topics) query.append("topic", topic);
  if (clientId) query.set("client_id", clientId);
  if (lastEventId) query.set("last_event_id", lastEventId);
  // EventSource cannot send an Authorization header; the query parameter carries the token.
  if (token) query.set("access_token", token);
  if (wants.presence) query.set("presence", "true");
  // Every event arrives as `message`, whatever its type: none needs naming in advance.
  query.set("all_types", "true");
  return `${base.replace(/\/+$/, "")}/events?${query}`;
}

/** The delay before reconnection attempt `attempt` (1 for the first). */
export function backoff(attempt: number, retryMs: number, maxDelayMs: number, random: number): number {
  if (attempt <= 1) return Math.min(retryMs, maxDelayMs);
  const doubled = Math.min(maxDelayMs, retryMs * 2 ** Math.min(attempt - 1, 16));
  // Half to all of it, so that clients cut off together do not come back together.
  return Math.round(doubled * (0.5 + random / 2));
}

export class Stream {
  state: State = "paused";
  clientId: string | null;
  lastEventId: string | null;
  private wants: StreamWants;
  private source: EventSourceLike | null = null;
  private token: string | null = null;
  private retryMs = DEFAULT_RETRY_MS;
  private attempt = 0;
  private refusals = 0;
  private timer: unknown = null;
  private renewTimer: unknown = null;
  /** Moved on with each source, so a late callback of an old one is ignored. */
  private generation = 0;

  constructor(
    private readonly env: Env,
    private readonly options: StreamOptions,
    private readonly listener: StreamListener,
  ) {
    this.wants = { topics: [...options.topics], presence: options.presence };
    this.clientId = options.clientId;
    this.lastEventId = options.lastEventId;
  }

  /** Opens the stream (again, after a pause). */
  start(): void {
    if (this.state !== "paused") return;
    this.setState("connecting", null);
    void this.open(false);
  }

  /** Changes what the stream asks for; an open stream reconnects at once, missing nothing. */
  setWants(wants: StreamWants): void {
    const same =
      wants.presence === this.wants.presence &&
      wants.topics.length === this.wants.topics.length &&
      wants.topics.every((topic, i) => topic === this.wants.topics[i]);
    if (same) return;
    this.wants = { topics: [...wants.topics], presence: wants.presence };
    if (this.state === "open" || this.state === "connecting" || this.state === "reconnecting") {
      this.drop();
      this.setState("connecting", null);
      void this.open(false);
    }
  }

  /** Closes the stream until `start`; it resumes where it stopped. */
  pause(): void {
    if (this.state === "closed") return;
    this.drop();
    this.setState("paused", null);
  }

  /** Closes the stream for good. */
  close(reason: string | null = null): void {
    this.drop();
    this.setState("closed", reason);
  }

  private setState(state: State, detail: string | null): void {
    this.state = state;
    this.listener.state(state, detail);
  }

  private drop(): void {
    this.generation += 1;
    this.source?.close();
    this.source = null;
    for (const timer of [this.timer, this.renewTimer]) {
      if (timer !== null) this.env.clearTimeout(timer);
    }
    this.timer = this.renewTimer = null;
  }

  /** Gets the credential (a new one with `renew`), then opens the source. */
  private async open(renew: boolean): Promise<void> {
    const generation = ++this.generation;
    if (this.options.credential && (renew || this.token === null)) {
      try {
        this.token = (await this.options.credential(renew)) ?? null;
      } catch {
        this.token = null;
      }
      if (generation !== this.generation) return;
      // Nothing to replace the credential with: the stream ends rather than going on anonymously.
      if (renew && this.token === null) {
        this.setState("closed", "no credential");
        return;
      }
    }
    const url = eventsUrl(this.options.url, this.wants, this.clientId, this.lastEventId, this.token);
    const source = new this.env.EventSource(url);
    this.source = source;
    const mine = (handler: (event: MessageEvent) => void) => (event: MessageEvent) => {
      if (generation === this.generation) handler(event);
    };
    source.addEventListener(DEFAULT_EVENT_TYPE, mine((event) => this.onEvent(event)));
    source.addEventListener(CONNECTED, mine((event) => this.onConnected(event)));
    source.addEventListener(RESET, mine((event) => this.onReset(event)));
    source.addEventListener(CLOSING, mine((event) => this.onClosing(event)));
    source.addEventListener(PRESENCE, mine((event) => this.onPresence(event)));
    source.onerror = (event: Event) => {
      // A frame named `error` reaches `onerror` too, as a MessageEvent: not a failure.
      if (generation !== this.generation || "data" in event) return;
      this.onError(source.readyState === 2);
    };
  }

  private onEvent(message: MessageEvent): void {
    const envelope = parse<Envelope>(message.data);
    if (!envelope || typeof envelope.id !== "string") return;
    if (!isAfter(envelope.id, this.lastEventId)) return;
    this.lastEventId = envelope.id;
    this.listener.event(envelope);
  }

  private onConnected(message: MessageEvent): void {
    const connected = parse<Connected>(message.data);
    if (!connected) return;
    this.clientId = connected.client_id;
    if (connected.retry_ms > 0) this.retryMs = connected.retry_ms;
    // Without a last event id, the greeting names the position the stream starts from.
    if (message.lastEventId && isAfter(message.lastEventId, this.lastEventId)) {
      this.lastEventId = message.lastEventId;
    }
    this.attempt = 0;
    this.refusals = 0;
    this.scheduleRenewal();
    this.listener.connected(connected);
    this.setState("open", null);
  }

  private onReset(message: MessageEvent): void {
    const reset = parse<Reset>(message.data);
    if (!reset) return;
    this.lastEventId = reset.latest_id;
    this.listener.reset(reset);
  }

  private onPresence(message: MessageEvent): void {
    const change = parse<PresenceChange>(message.data);
    if (change) this.listener.presence(change);
  }

  private onClosing(message: MessageEvent): void {
    const closing = parse<Closing>(message.data);
    if (!closing) return;
    this.listener.closing(closing);
    // The browser would come back by itself with the URL it was opened with.
    this.drop();
    if (closing.reason === "credential_expired" && this.options.credential) {
      this.setState("reconnecting", closing.reason);
      void this.open(true);
    } else if (closing.reconnect) {
      this.reconnectLater(closing.reason);
    } else {
      this.setState("closed", closing.reason);
    }
  }

  private onError(refused: boolean): void {
    if (this.state === "closed" || this.state === "paused") return;
    this.drop();
    let renew = false;
    if (refused) {
      // Refused: most likely the server forgot the client id, else the credential is no good.
      this.refusals += 1;
      if (this.refusals === 1 && this.clientId) {
        this.clientId = null;
      } else if (this.options.credential) {
        renew = true;
      }
    }
    this.reconnectLater(refused ? "refused" : "lost", renew);
  }

  private reconnectLater(detail: string, renew = false): void {
    this.attempt += 1;
    this.setState("reconnecting", detail);
    const delay = backoff(this.attempt, this.retryMs, this.options.maxDelayMs, this.env.random());
    this.timer = this.env.setTimeout(() => {
      this.timer = null;
      if (this.state === "reconnecting") void this.open(renew);
    }, delay);
  }

  /** Renews the credential shortly before it expires, and reconnects with the new one. */
  private scheduleRenewal(): void {
    if (this.renewTimer !== null) this.env.clearTimeout(this.renewTimer);
    this.renewTimer = null;
    const expiry = this.token && this.options.credential ? expiryOf(this.token) : null;
    if (expiry === null) return;
    const left = expiry - this.env.now();
    const wait = Math.max(0, left - Math.min(RENEW_AHEAD_MS, left / 10));
    this.renewTimer = this.env.setTimeout(() => {
      this.renewTimer = null;
      void this.renew();
    }, wait);
  }

  private async renew(): Promise<void> {
    const provider = this.options.credential;
    if (!provider || this.state !== "open") return;
    let token: string | null;
    try {
      token = (await provider(true)) ?? null;
    } catch {
      return;
    }
    if (this.state !== "open" || token === null || token === this.token) return;
    this.token = token;
    // The new stream resumes after the last event: nothing is missed or repeated.
    this.drop();
    this.setState("connecting", "credential renewed");
    void this.open(false);
  }
}

function parse<T>(data: unknown): T | null {
  if (typeof data !== "string") return null;
  try {
    return JSON.parse(data) as T;
  } catch {
    return null;
  }
}
