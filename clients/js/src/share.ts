// One connection for all the tabs of a browser profile on one origin. Every subscription that
// shares is a member of a group: the member holding the group's Web Lock leads, opening one
// stream for the union of what the members ask for, and relays everything it receives on a
// BroadcastChannel; each member keeps what is meant for it. When the leader goes (its tab
// closes, or it is closed), the lock passes to another member, which resumes the stream after
// the last event relayed, with the same client id: nothing is lost, and members drop what they
// already had.

import type { Closing, Connected, Envelope, PresenceChange, Reset } from "./protocol.js";
import { type ChannelLike, type Env, isAfter, randomId } from "./env.js";
import { type State, Stream, type StreamListener, type StreamOptions, type StreamWants } from "./connection.js";

/** What members tell each other. */
export type GroupMessage =
  | { t: "want"; from: string; topics: string[]; presence: boolean }
  | { t: "bye"; from: string }
  | { t: "hello"; from: string }
  | { t: "leader"; from: string }
  | { t: "event"; envelope: Envelope }
  | { t: "connected"; connected: Connected; lastEventId: string | null }
  | { t: "reset"; reset: Reset }
  | { t: "closing"; closing: Closing }
  | { t: "presence"; change: PresenceChange }
  | {
      t: "state";
      state: State;
      detail: string | null;
      clientId: string | null;
      lastEventId: string | null;
    };

/** How often a member says again what it wants, and after how long silence it is forgotten. */
const REFRESH_MS = 10_000;
const FORGET_MS = 35_000;

/** The union of what members want: topics sorted, presence if any asks. */
export function union(all: Iterable<StreamWants>): StreamWants {
  const topics = new Set<string>();
  let presence = false;
  for (const wants of all) {
    for (const topic of wants.topics) topics.add(topic);
    presence ||= wants.presence;
  }
  return { topics: [...topics].sort(), presence };
}

export class Member {
  readonly id: string;
  leader = false;
  private readonly channel: ChannelLike;
  private readonly others = new Map<string, StreamWants & { seen: number }>();
  private stream: Stream | null = null;
  private clientId: string | null;
  private lastEventId: string | null;
  private release: (() => void) | null = null;
  private refresh: unknown = null;
  private closed = false;

  constructor(
    private readonly env: Env & Required<Pick<Env, "BroadcastChannel" | "locks">>,
    group: string,
    private readonly wants: StreamWants,
    private readonly options: StreamOptions,
    private readonly sink: StreamListener,
  ) {
    this.id = randomId(env);
    this.clientId = options.clientId;
    this.lastEventId = options.lastEventId;
    this.channel = new env.BroadcastChannel(group);
    this.channel.onmessage = (message) => this.receive(message.data as GroupMessage);
    this.post({ t: "want", from: this.id, ...wants });
    this.post({ t: "hello", from: this.id });
    this.scheduleRefresh();
    void env.locks.request(group, () => this.lead());
  }

  /** The stream's state as last known here. */
  get position(): { clientId: string | null; lastEventId: string | null } {
    if (this.stream) return { clientId: this.stream.clientId, lastEventId: this.stream.lastEventId };
    return { clientId: this.clientId, lastEventId: this.lastEventId };
  }

  /** Leaves the group; a leader hands the stream on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.post({ t: "bye", from: this.id });
    if (this.refresh !== null) this.env.clearTimeout(this.refresh);
    this.channel.close();
    this.stream?.close();
    this.stream = null;
    this.leader = false;
    this.release?.();
  }

  private post(message: GroupMessage): void {
    if (!this.closed || message.t === "bye") this.channel.postMessage(message);
  }

  private scheduleRefresh(): void {
    this.refresh = this.env.setTimeout(() => {
      this.post({ t: "want", from: this.id, ...this.wants });
      const now = this.env.now();
      let forgot = false;
      for (const [id, wants] of this.others) {
        if (now - wants.seen > FORGET_MS) forgot = this.others.delete(id) || forgot;
      }
      if (forgot) this.followWants();
      this.scheduleRefresh();
    }, REFRESH_MS);
  }

  /** Holds the lock while leading: the returned promise settles when this member closes. */
  private lead(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const held = new Promise<void>((resolve) => {
      this.release = resolve;
    });
    this.leader = true;
    this.post({ t: "leader", from: this.id });
    const relay: StreamListener = {
      event: (envelope) => {
        this.post({ t: "event", envelope });
        this.sink.event(envelope);
      },
      connected: (connected) => {
        this.post({ t: "connected", connected, lastEventId: this.stream?.lastEventId ?? null });
        this.sink.connected(connected);
      },
      reset: (reset) => {
        this.post({ t: "reset", reset });
        this.sink.reset(reset);
      },
      closing: (closing) => {
        this.post({ t: "closing", closing });
        this.sink.closing(closing);
      },
      presence: (change) => {
        this.post({ t: "presence", change });
        this.sink.presence(change);
      },
      state: (state, detail) => {
        const { clientId, lastEventId } = this.position;
        this.post({ t: "state", state, detail, clientId, lastEventId });
        this.sink.state(state, detail);
      },
    };
    this.stream = new Stream(
      this.env,
      {
        ...this.options,
        ...union([this.wants, ...this.others.values()]),
        clientId: this.clientId,
        lastEventId: this.lastEventId,
      },
      relay,
    );
    this.stream.start();
    return held;
  }

  /** A leader follows the members' wants. */
  private followWants(): void {
    this.stream?.setWants(union([this.wants, ...this.others.values()]));
  }

  private receive(message: GroupMessage): void {
    if (this.closed) return;
    switch (message.t) {
      case "want":
        this.others.set(message.from, {
          topics: message.topics,
          presence: message.presence,
          seen: this.env.now(),
        });
        if (this.leader) this.followWants();
        return;
      case "bye":
        if (this.others.delete(message.from) && this.leader) this.followWants();
        return;
      case "hello":
        this.post({ t: "want", from: this.id, ...this.wants });
        if (this.stream) {
          const { clientId, lastEventId } = this.position;
          this.post({ t: "state", state: this.stream.state, detail: null, clientId, lastEventId });
        }
        return;
      case "leader":
        this.post({ t: "want", from: this.id, ...this.wants });
        return;
      default:
        if (!this.leader) this.follow(message);
    }
  }

  /** A follower takes in what the leader relays. */
  private follow(message: GroupMessage): void {
    switch (message.t) {
      case "event":
        if (isAfter(message.envelope.id, this.lastEventId)) this.lastEventId = message.envelope.id;
        this.sink.event(message.envelope);
        return;
      case "connected":
        this.clientId = message.connected.client_id;
        this.advance(message.lastEventId);
        this.sink.connected(message.connected);
        return;
      case "reset":
        this.lastEventId = message.reset.latest_id;
        this.sink.reset(message.reset);
        return;
      case "closing":
        this.sink.closing(message.closing);
        return;
      case "presence":
        this.sink.presence(message.change);
        return;
      case "state":
        if (message.clientId) this.clientId = message.clientId;
        this.advance(message.lastEventId);
        this.sink.state(message.state, message.detail);
        return;
      default:
    }
  }

  private advance(id: string | null): void {
    if (id && isAfter(id, this.lastEventId)) this.lastEventId = id;
  }
}

/** Whether `env` lets tabs share. */
export function canShare(env: Env): env is Env & Required<Pick<Env, "BroadcastChannel" | "locks">> {
  return typeof env.BroadcastChannel === "function" && env.locks !== undefined;
}

/** The name of the group of a Herald URL (or the name given). */
export function groupName(env: Env, url: string, share: string | true): string {
  if (typeof share === "string") return `herald-client:${share}`;
  let resolved = url;
  try {
    const parsed = new URL(url || "/", env.location ?? "http://localhost/");
    resolved = parsed.origin + parsed.pathname;
  } catch {
    // Kept as given.
  }
  return `herald-client:${resolved}`;
}
