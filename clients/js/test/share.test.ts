// Tabs sharing one connection: one stream for the union of their topics, each tab getting its
// own, and a hand-over without a gap or a repeat when the leading tab goes.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { type HeraldEvent, type Subscription, subscribe } from "../src/index.js";
import { Clock, FakeEventSource, fakeEnv, Locks, settle } from "./fakes.js";

let open: Subscription<number>[] = [];

beforeEach(() => FakeEventSource.reset());
afterEach(() => {
  for (const sub of open) sub.close();
  open = [];
});

/** A tab's subscription, and what it received. */
function tab(env: ReturnType<typeof fakeEnv>, topics: string[], share: boolean | string = true) {
  const got: string[] = [];
  const sub = subscribe<number>(topics, {
    env,
    share,
    onEvent: (event: HeraldEvent<number>) => got.push(`${event.topic}:${event.id}`),
  });
  open.push(sub);
  return { sub, got };
}

test("tabs share one stream for the union of their topics, and each gets its own", async () => {
  const clock = new Clock();
  const env = fakeEnv(clock, { locks: new Locks() });
  const a = tab(env, ["a"]);
  const b = tab(env, ["b"]);
  const c = tab(env, ["a", "c"]);
  await settle();
  assert.ok(a.sub.leader && !b.sub.leader && !c.sub.leader, "the first tab leads");
  const live = FakeEventSource.live();
  assert.equal(live.length, 1, "one stream");
  assert.deepEqual(live[0].params("topic"), ["a", "b", "c"]);
  live[0].connected("shared");
  await settle();
  assert.equal(b.sub.state, "open", "the leader tells the others");
  assert.equal(b.sub.clientId, "shared");
  live[0].event("1", "a");
  live[0].event("2", "b");
  live[0].event("3", "c");
  live[0].event("4", null);
  await settle();
  assert.deepEqual(a.got, ["a:1", "null:4"]);
  assert.deepEqual(b.got, ["b:2", "null:4"]);
  assert.deepEqual(c.got, ["a:1", "c:3", "null:4"]);
});

test("a tab asking for a new topic widens the stream, which resumes where it was", async () => {
  const clock = new Clock();
  const env = fakeEnv(clock, { locks: new Locks() });
  tab(env, ["a"]);
  await settle();
  FakeEventSource.last().connected("shared");
  FakeEventSource.last().event("7", "a");
  const d = tab(env, ["d"]);
  await settle();
  const live = FakeEventSource.live();
  assert.equal(live.length, 1);
  assert.deepEqual(live[0].params("topic"), ["a", "d"]);
  assert.equal(live[0].param("last_event_id"), "7");
  assert.equal(live[0].param("client_id"), "shared");
  live[0].connected("shared");
  live[0].event("8", "d");
  await settle();
  assert.deepEqual(d.got, ["d:8"]);
  // It leaves: the stream narrows again.
  d.sub.close();
  await settle();
  assert.deepEqual(FakeEventSource.last().params("topic"), ["a"]);
});

test("when the leading tab closes, another resumes the stream with no gap and no repeat", async () => {
  const clock = new Clock();
  const env = fakeEnv(clock, { locks: new Locks() });
  const first = tab(env, ["a", "b"]);
  const second = tab(env, ["a"]);
  const third = tab(env, ["b"]);
  await settle();
  const before = FakeEventSource.last();
  before.connected("shared", 1000, "10");
  before.event("11", "a");
  before.event("12", "b");
  await settle();
  first.sub.close();
  await settle();
  assert.ok(second.sub.leader !== third.sub.leader, "one of them leads");
  const after = FakeEventSource.live();
  assert.equal(after.length, 1);
  assert.notEqual(after[0], before);
  assert.deepEqual(after[0].params("topic"), ["a", "b"]);
  assert.equal(after[0].param("client_id"), "shared", "the same client");
  assert.equal(after[0].param("last_event_id"), "12", "after the last event relayed");
  after[0].connected("shared");
  // An event the old leader had relayed comes again (a leader that died mid-relay): dropped.
  after[0].event("12", "b");
  after[0].event("13", "a");
  after[0].event("14", "b");
  await settle();
  assert.deepEqual(second.got, ["a:11", "a:13"]);
  assert.deepEqual(third.got, ["b:12", "b:14"]);
});

test("tabs in other groups, or not sharing, keep their own streams", async () => {
  const clock = new Clock();
  const env = fakeEnv(clock, { locks: new Locks() });
  const ada = tab(env, ["a"], "user-ada");
  const bob = tab(env, ["a"], "user-bob");
  const alone = tab(env, ["a"], false);
  await settle();
  assert.equal(FakeEventSource.live().length, 3);
  assert.ok(ada.sub.leader && bob.sub.leader && !alone.sub.leader);
});

test("a paused tab keeps what arrives on the shared stream, and says so when it kept too little", async () => {
  const clock = new Clock();
  const env = fakeEnv(clock, { locks: new Locks() });
  tab(env, ["a"]);
  const got: string[] = [];
  const resets: string[] = [];
  const paused = subscribe<number>(["a"], {
    env,
    pauseBuffer: 2,
    onEvent: (event) => got.push(event.id),
    onReset: (reset) => resets.push(reset.latest_id),
  });
  open.push(paused);
  await settle();
  const source = FakeEventSource.last();
  source.connected("shared");
  paused.pause();
  source.event("1", "a");
  source.event("2", "a");
  source.event("3", "a");
  await settle();
  assert.deepEqual(got, []);
  assert.equal(FakeEventSource.live().length, 1, "the shared stream stays open");
  paused.resume();
  assert.deepEqual(resets, ["1"], "event 1 was let go: the gap is reported");
  assert.deepEqual(got, ["2", "3"]);
});
