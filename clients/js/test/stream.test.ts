// The stream of one subscription: what it asks for, how it comes back, and when it stops.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { backoff, eventsUrl, expiryOf, type HeraldEvent, subscribe } from "../src/index.js";
import { Clock, FakeEventSource, fakeEnv, settle } from "./fakes.js";

beforeEach(() => FakeEventSource.reset());

/** A token whose `exp` is `exp` (seconds). */
function jwt(exp: number, sub = "ada"): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256" })}.${part({ sub, exp })}.signature`;
}

test("the URL names topics, identity, position, credential, presence and every type", () => {
  const url = eventsUrl("https://h.example/", { topics: ["rooms/1", "b"], presence: true }, "abc", "42", "t.k");
  assert.equal(
    url,
    "https://h.example/events?topic=rooms%2F1&topic=b&client_id=abc&last_event_id=42&access_token=t.k&presence=true&all_types=true",
  );
  assert.equal(eventsUrl("", { topics: [], presence: false }, null, null, null), "/events?all_types=true");
});

test("the back-off starts at the server's delay, doubles with jitter, and is capped", () => {
  assert.equal(backoff(1, 1000, 30_000, 0.9), 1000);
  assert.equal(backoff(2, 1000, 30_000, 0), 1000, "half of 2 s at the least");
  assert.equal(backoff(2, 1000, 30_000, 1), 2000);
  assert.equal(backoff(3, 1000, 30_000, 1), 4000);
  assert.equal(backoff(30, 1000, 30_000, 1), 30_000);
  assert.equal(backoff(1, 60_000, 30_000, 0.5), 30_000);
});

test("a credential's expiry is read from its exp claim", () => {
  assert.equal(expiryOf(jwt(1_800_000_600)), 1_800_000_600_000);
  assert.equal(expiryOf("not-a-jwt"), null);
});

test("events arrive in order, once, and the stream resumes after the last with the same client", async () => {
  const clock = new Clock();
  const got: HeraldEvent<{ n: number }>[] = [];
  const states: string[] = [];
  const sub = subscribe<{ n: number }>(["a"], {
    share: false,
    env: fakeEnv(clock),
    onEvent: (event) => got.push(event),
    onState: (state) => states.push(state),
  });
  await settle();
  const first = FakeEventSource.last();
  assert.deepEqual(first.params("topic"), ["a"]);
  assert.equal(first.param("client_id"), null);
  first.connected("client-1", 500);
  first.event("1", "a", { n: 1 });
  first.event("2", "a", { n: 2 });
  first.event("2", "a", { n: 2 });
  assert.deepEqual(got.map((event) => event.data.n), [1, 2], "the repeated id is dropped");
  assert.equal(sub.clientId, "client-1");
  assert.equal(sub.state, "open");

  first.fail(0);
  assert.equal(sub.state, "reconnecting");
  assert.ok(first.closed, "the browser's own retry, with the old URL, is stopped");
  await clock.advance(499);
  assert.equal(FakeEventSource.opened.length, 1, "not before the server's delay");
  await clock.advance(1);
  const second = FakeEventSource.last();
  assert.equal(second.param("client_id"), "client-1");
  assert.equal(second.param("last_event_id"), "2");
  second.connected("client-1");
  second.event("3", "a", { n: 3 });
  assert.deepEqual(got.map((event) => event.data.n), [1, 2, 3]);
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open"]);
  sub.close();
});

test("the greeting's position counts, and a reset moves the position past the gap", async () => {
  const clock = new Clock();
  const resets: string[] = [];
  const sub = subscribe(["a"], { share: false, env: fakeEnv(clock), onReset: (reset) => resets.push(reset.reason) });
  await settle();
  FakeEventSource.last().connected("c", 1000, "17");
  assert.equal(sub.lastEventId, "17", "the position the stream started from");
  FakeEventSource.last().frame("herald.reset", { reason: "history_expired", latest_id: "90" });
  assert.deepEqual(resets, ["history_expired"]);
  assert.equal(sub.lastEventId, "90");
  sub.close();
});

test("told not to come back, it stays closed", async () => {
  const clock = new Clock();
  const closings: string[] = [];
  const sub = subscribe(["a"], { share: false, env: fakeEnv(clock), onClosing: (c) => closings.push(c.reason) });
  await settle();
  const source = FakeEventSource.last();
  source.connected("c");
  source.frame("herald.closing", { reason: "admin_close", reconnect: false });
  assert.deepEqual(closings, ["admin_close"]);
  assert.equal(sub.state, "closed");
  assert.ok(source.closed);
  await clock.advance(120_000);
  assert.equal(FakeEventSource.opened.length, 1);
});

test("told to come back (a shutdown), it does, after the delay", async () => {
  const clock = new Clock();
  const sub = subscribe(["a"], { share: false, env: fakeEnv(clock) });
  await settle();
  FakeEventSource.last().connected("c", 2000);
  FakeEventSource.last().event("5", "a");
  FakeEventSource.last().frame("herald.closing", { reason: "shutdown", reconnect: true });
  assert.equal(sub.state, "reconnecting");
  await clock.advance(2000);
  assert.equal(FakeEventSource.opened.length, 2);
  assert.equal(FakeEventSource.last().param("last_event_id"), "5");
  sub.close();
});

test("an expired credential is renewed, and one about to expire is renewed before it does", async () => {
  const clock = new Clock();
  const now = clock.time / 1000;
  let issued = 0;
  const asked: boolean[] = [];
  const sub = subscribe(["a"], {
    share: false,
    env: fakeEnv(clock),
    credential: (renew) => {
      asked.push(renew);
      issued += 1;
      return jwt(now + 600 * issued);
    },
  });
  await settle();
  assert.equal(FakeEventSource.last().param("access_token"), jwt(now + 600));
  FakeEventSource.last().connected("c");
  FakeEventSource.last().event("1", "a");
  // The server closes the stream: the credential expired.
  FakeEventSource.last().frame("herald.closing", { reason: "credential_expired", reconnect: false });
  await settle();
  assert.equal(sub.state, "reconnecting");
  assert.equal(FakeEventSource.opened.length, 2);
  assert.equal(FakeEventSource.last().param("access_token"), jwt(now + 1200));
  assert.equal(FakeEventSource.last().param("last_event_id"), "1");
  FakeEventSource.last().connected("c");
  // 1200 s of validity: renewed 60 s before the end, without waiting for the server.
  await clock.advance(1200_000 - 60_000 - 1);
  assert.equal(FakeEventSource.opened.length, 2);
  await clock.advance(1);
  await settle();
  assert.equal(FakeEventSource.opened.length, 3);
  assert.equal(FakeEventSource.last().param("access_token"), jwt(now + 1800));
  assert.deepEqual(asked, [false, true, true]);
  sub.close();
});

test("a refused stream comes back as a new client first, then with a new credential", async () => {
  const clock = new Clock();
  const asked: boolean[] = [];
  const sub = subscribe(["a"], {
    share: false,
    env: fakeEnv(clock),
    credential: (renew) => {
      asked.push(renew);
      return `token-${asked.length}`;
    },
  });
  await settle();
  FakeEventSource.last().connected("forgotten", 100);
  FakeEventSource.last().fail(0);
  await clock.advance(100);
  FakeEventSource.last().fail(2);
  assert.equal(sub.state, "reconnecting");
  await clock.advance(30_000);
  await settle();
  assert.equal(FakeEventSource.last().param("client_id"), null, "the server forgot the client id");
  FakeEventSource.last().fail(2);
  await clock.advance(30_000);
  await settle();
  assert.deepEqual(asked, [false, true]);
  assert.equal(FakeEventSource.last().param("access_token"), "token-2");
  sub.close();
});

test("with nothing to renew the credential with, the stream ends", async () => {
  const clock = new Clock();
  const sub = subscribe(["a"], {
    share: false,
    env: fakeEnv(clock),
    credential: (renew) => (renew ? null : "only-one"),
  });
  await settle();
  FakeEventSource.last().connected("c");
  FakeEventSource.last().frame("herald.closing", { reason: "credential_expired", reconnect: false });
  await settle();
  assert.equal(sub.state, "closed");
  assert.equal(FakeEventSource.opened.length, 1, "not reopened without a credential");
});

test("a paused stream closes and resumes where it stopped", async () => {
  const clock = new Clock();
  const sub = subscribe(["a"], { share: false, env: fakeEnv(clock) });
  await settle();
  FakeEventSource.last().connected("c");
  FakeEventSource.last().event("8", "a");
  sub.pause();
  assert.equal(sub.state, "paused");
  assert.ok(FakeEventSource.last().closed);
  sub.resume();
  await settle();
  assert.equal(FakeEventSource.opened.length, 2);
  assert.equal(FakeEventSource.last().param("last_event_id"), "8");
  assert.equal(FakeEventSource.last().param("client_id"), "c");
  sub.close();
});

test("the subscription is an async iterable of its events, ending when it closes", async () => {
  const clock = new Clock();
  const sub = subscribe<string>(["a"], { share: false, env: fakeEnv(clock) });
  await settle();
  FakeEventSource.last().connected("c");
  const seen: string[] = [];
  const reading = (async () => {
    for await (const event of sub) seen.push(event.data);
  })();
  FakeEventSource.last().event("1", "a", "one");
  FakeEventSource.last().event("2", null, "to me");
  FakeEventSource.last().event("3", "other", "not mine");
  await settle();
  sub.close();
  await reading;
  assert.deepEqual(seen, ["one", "to me"]);
});
