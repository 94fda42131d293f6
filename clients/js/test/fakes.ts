// Stand-ins for the browser: an EventSource the test drives, a clock it moves, and Web Locks
// within one process. BroadcastChannel is Node's own.

import type { Env, EventSourceLike, LocksLike } from "../src/env.js";

export class FakeEventSource implements EventSourceLike {
  static opened: FakeEventSource[] = [];
  readyState = 0;
  onerror: ((event: Event) => void) | null = null;
  closed = false;
  private readonly listeners = new Map<string, ((event: MessageEvent) => void)[]>();

  constructor(readonly url: string) {
    FakeEventSource.opened.push(this);
  }

  static reset(): void {
    FakeEventSource.opened = [];
  }

  static live(): FakeEventSource[] {
    return FakeEventSource.opened.filter((source) => !source.closed);
  }

  static last(): FakeEventSource {
    const last = FakeEventSource.opened.at(-1);
    if (!last) throw new Error("no EventSource was opened");
    return last;
  }

  addEventListener(type: string, listener: (event: MessageEvent) => void): void {
    const list = this.listeners.get(type) ?? [];
    list.push(listener);
    this.listeners.set(type, list);
  }

  close(): void {
    this.closed = true;
    this.readyState = 2;
  }

  /** The server sends a frame. */
  frame(type: string, data: unknown, lastEventId = ""): void {
    if (this.closed) throw new Error(`frame ${type} on a closed source`);
    this.readyState = 1;
    const event = { data: JSON.stringify(data), lastEventId } as MessageEvent;
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  connected(clientId: string, retryMs = 1000, position = ""): void {
    this.frame("herald.connected", { client_id: clientId, connection_id: "c", topics: [], retry_ms: retryMs }, position);
  }

  event(id: string, topic: string | null, data: unknown = null, type = "note"): void {
    this.frame("message", { id, topic, type, data, time: "2026-12-02T00:00:00Z" }, id);
  }

  /** The connection drops (`readyState` 0: the browser would retry) or is refused (2). */
  fail(readyState: 0 | 2): void {
    this.readyState = readyState;
    this.onerror?.({ type: "error" } as Event);
  }

  param(name: string): string | null {
    return new URL(this.url, "http://herald.test").searchParams.get(name);
  }

  params(name: string): string[] {
    return new URL(this.url, "http://herald.test").searchParams.getAll(name);
  }
}

/** Timers that run when the test moves the clock. */
export class Clock {
  time = 1_800_000_000_000;
  private timers: { at: number; id: number; callback: () => void }[] = [];
  private nextId = 1;

  setTimeout(callback: () => void, ms: number): number {
    const id = this.nextId++;
    this.timers.push({ at: this.time + Math.max(0, ms), id, callback });
    return id;
  }

  clearTimeout(id: unknown): void {
    this.timers = this.timers.filter((timer) => timer.id !== id);
  }

  /** Moves the clock on by `ms`, running each timer due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.time = next.at;
      next.callback();
      await settle();
    }
    this.time = end;
  }
}

/** Web Locks for the members of one process: each name is granted to one holder at a time. */
export class Locks implements LocksLike {
  private readonly queues = new Map<string, (() => void)[]>();
  private readonly held = new Set<string>();

  request(name: string, callback: () => Promise<void>): Promise<void> {
    return new Promise((done) => {
      const grant = () => {
        this.held.add(name);
        void callback().finally(() => {
          this.held.delete(name);
          done();
          this.queues.get(name)?.shift()?.();
        });
      };
      if (this.held.has(name)) {
        const queue = this.queues.get(name) ?? [];
        queue.push(grant);
        this.queues.set(name, queue);
      } else {
        grant();
      }
    });
  }
}

/** Lets queued promise callbacks and channel messages run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

let seed = 1;

/** An environment of fakes; with `share`, tabs in it can share a connection. */
export function fakeEnv(clock: Clock, share?: { locks: Locks }): Env {
  return {
    EventSource: FakeEventSource,
    setTimeout: (callback, ms) => clock.setTimeout(callback, ms),
    clearTimeout: (id) => clock.clearTimeout(id),
    now: () => clock.time,
    random: () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    },
    BroadcastChannel: share ? (BroadcastChannel as unknown as Env["BroadcastChannel"]) : undefined,
    locks: share?.locks,
    location: "http://herald.test/app/",
  };
}
