// @credlet/client against the real agent (credlet-agent dev).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';

import {
  BadRequestError,
  Client,
  Credential,
  CredletError,
  ForbiddenError,
  NotFoundError,
  NotReadyError,
  UnavailableError,
  DEFAULT_SOCKET,
} from '../index.mjs';
import internals from '../index.cjs';
import { DevAgent } from './agent.mjs';

const { TokenBucket, backoffDelay, isTransient, toCredential, decode } = internals._internal;

let agent;
before(async () => {
  agent = await DevAgent.start();
});
after(async () => {
  await agent?.close();
});

const quiet = { warn() {} };
const fast = (o = {}) => new Client({ socketPath: agent.socket, backoff: [10, 50], logger: quiet, ...o });
const ERRORS = [ForbiddenError, NotFoundError, NotReadyError, BadRequestError, UnavailableError];

function checkError(err, cls, status, code) {
  assert.ok(err instanceof cls, `${err} is not a ${cls.name}`);
  assert.ok(err instanceof CredletError);
  assert.ok(err instanceof Error);
  assert.equal(err.name, cls.name);
  assert.equal(err.status, status);
  assert.equal(err.code, code);
  assert.ok(err.detail.length > 0);
  assert.ok(err.message.includes(code));
  for (const other of ERRORS) if (other !== cls) assert.ok(!(err instanceof other), `also a ${other.name}`);
}

async function timed(fn) {
  const start = performance.now();
  try {
    await fn();
  } catch (err) {
    return { err, took: performance.now() - start };
  }
  assert.fail('no error');
}

/** The next item of an async iterator, within ms. */
async function next(it, ms = 30000) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`nothing from the watch in ${ms}ms`)), ms);
  });
  try {
    return await Promise.race([it.next(), timeout]);
  } finally {
    clearTimeout(t);
  }
}

describe('get, list, health', () => {
  test('get', async () => {
    const c = fast();
    const cred = await c.get('broker-oauth'); // never rotated by these tests
    c.close();
    assert.ok(cred instanceof Credential);
    assert.equal(cred.name, 'broker-oauth');
    assert.equal(cred.version, 1);
    assert.deepEqual({ ...cred.fields }, { refresh_token: 'FAKE-demo-refresh-token-v1' });
    assert.equal(cred.field('refresh_token'), 'FAKE-demo-refresh-token-v1');
    assert.equal(cred.field('nope'), undefined);
    assert.deepEqual(cred.fieldNames, ['refresh_token']);
    assert.ok(cred.fetchedAt instanceof Date);
    assert.ok(Math.abs(Date.now() - cred.fetchedAt.getTime()) < 600e3);
    assert.equal(cred.expiresAt, null);
    assert.throws(() => {
      cred.fields.refresh_token = 'x';
    }, TypeError);
  });

  test('getPrevious: NotFoundError before a rotation, the old version after', async () => {
    const other = await agent.runAgent('previous', []);
    const c = fast({ socketPath: other.socket, waitTimeoutMs: 5000 });
    try {
      await assert.rejects(c.getPrevious('exchange'), (err) => {
        checkError(err, NotFoundError, 404, 'not_found');
        return true;
      });
      const before = await c.get('exchange');
      await agent.rotate({ api_key: `FAKE-previous-${before.version + 1}` });
      const deadline = Date.now() + 15000;
      while ((await c.get('exchange')).version !== before.version + 1) {
        assert.ok(Date.now() < deadline, 'the rotation did not reach the agent in 15 s');
        await new Promise((r) => setTimeout(r, 50));
      }
      const prev = await c.getPrevious('exchange');
      assert.ok(prev instanceof Credential);
      assert.equal(prev.version, before.version);
      assert.deepEqual({ ...prev.fields }, { ...before.fields });
      await assert.rejects(c.getPrevious('Not A Name'), BadRequestError);
    } finally {
      c.close();
      await other.stop();
    }
  });

  test('list', async () => {
    const c = fast();
    const infos = await c.list();
    c.close();
    assert.deepEqual(infos.map((i) => i.name), ['broker-oauth', 'exchange']);
    for (const i of infos) {
      assert.ok(i.version >= 1);
      assert.ok(i.fetchedAt instanceof Date);
    }
    assert.ok(!JSON.stringify(infos).includes('FAKE'));
  });

  test('health', async () => {
    const c = fast();
    const h = await c.health();
    c.close();
    assert.equal(h.ready, true);
    assert.deepEqual(Object.keys(h.credentials).sort(), ['broker-oauth', 'exchange']);
    const b = h.credentials['broker-oauth'];
    assert.equal(b.version, 1);
    assert.equal(typeof b.ageSeconds, 'number');
    assert.equal(b.lastError, null);
    assert.equal(b.optional, false);
  });

  test('default socket', async () => {
    const old = process.env.CREDLET_SOCKET;
    try {
      process.env.CREDLET_SOCKET = agent.socket;
      const c = new Client({ logger: quiet });
      assert.equal(c.socketPath, agent.socket);
      assert.equal((await c.get('broker-oauth')).version, 1);
      c.close();
      delete process.env.CREDLET_SOCKET;
      assert.equal(new Client().socketPath, DEFAULT_SOCKET);
      assert.equal(DEFAULT_SOCKET, '/credlet/run/agent.sock');
    } finally {
      if (old === undefined) delete process.env.CREDLET_SOCKET;
      else process.env.CREDLET_SOCKET = old;
    }
  });

  test('keep-alive: sequential requests share one connection', async () => {
    const c = fast();
    await c.health();
    const pool = () => Object.values(c._agent.freeSockets).flat();
    const [first] = pool();
    assert.ok(first);
    for (let i = 0; i < 5; i++) await c.get('broker-oauth');
    assert.equal(pool().length, 1);
    assert.equal(pool()[0], first);
    c.close();
  });

  test('concurrent requests', async () => {
    const c = fast();
    const creds = await Promise.all(Array.from({ length: 40 }, () => c.get('broker-oauth')));
    c.close();
    assert.deepEqual([...new Set(creds.map((x) => x.version))], [1]);
  });
});

describe('errors', () => {
  test('NotFoundError, not retried', async () => {
    const c = fast({ attempts: 4, backoff: [200, 200] });
    const { err, took } = await timed(() => c.get('nope'));
    c.close();
    checkError(err, NotFoundError, 404, 'not_found');
    assert.ok(err.detail.includes('nope'));
    assert.ok(took < 100, `took ${took}ms: a permanent error must not be retried`);
  });

  test('BadRequestError, not retried', async () => {
    const c = fast({ attempts: 4, backoff: [200, 200] });
    const { err, took } = await timed(() => c.get('Not A Name'));
    c.close();
    checkError(err, BadRequestError, 400, 'bad_request');
    assert.ok(took < 100);
  });

  test('ForbiddenError, not retried', async () => {
    const other = await agent.runAgent('forbid', ['--allow-uid', String(os.userInfo().uid + 1)]);
    const c = fast({ socketPath: other.socket, attempts: 4, backoff: [200, 200] });
    try {
      const { err, took } = await timed(() => c.get('exchange'));
      checkError(err, ForbiddenError, 403, 'forbidden');
      assert.ok(err.detail.includes(`uid ${os.userInfo().uid}`));
      assert.ok(took < 100);
      await assert.rejects(next(c.watch('exchange'), 5000), ForbiddenError);
    } finally {
      c.close();
      await other.stop();
    }
  });

  test('NotReadyError, retried', async () => {
    const other = await agent.runAgent('pending', ['--credential', 'pending=secret/demo/pending;optional',
      '--credential', 'exchange=secret/demo/exchange']);
    const c = fast({ socketPath: other.socket, attempts: 4, backoff: [40, 40] });
    try {
      const { err, took } = await timed(() => c.get('pending'));
      checkError(err, NotReadyError, 503, 'not_ready');
      assert.ok(took >= 60, `took ${took}ms: not_ready must be retried`); // 3 pauses of >= 20ms
    } finally {
      c.close();
      await other.stop();
    }
  });

  test('UnavailableError: no socket', async () => {
    const sock = path.join(agent.dir, 'absent.sock');
    const c = fast({ socketPath: sock, attempts: 3, backoff: [40, 40] });
    const { err, took } = await timed(() => c.get('exchange'));
    checkError(err, UnavailableError, 0, 'unavailable');
    assert.ok(err.message.includes(sock));
    assert.equal(err.cause.code, 'ENOENT');
    assert.ok(took >= 40, 'an absent socket must be retried');
  });

  test('closed client', async () => {
    const c = fast();
    await c.health();
    c.close();
    const { err } = await timed(() => c.get('broker-oauth'));
    assert.ok(err instanceof UnavailableError);
    assert.equal(err.code, 'closed');
  });

  test('close() during the back-off', async () => {
    const c = fast({ socketPath: path.join(agent.dir, 'absent.sock'), attempts: 100, backoff: [50, 50] });
    setTimeout(() => c.close(), 100);
    const { err, took } = await timed(() => c.get('exchange'));
    assert.ok(err instanceof UnavailableError);
    assert.equal(err.code, 'closed');
    assert.ok(took < 1000);
  });

  test('AbortSignal rejects a call', async () => {
    const c = fast({ socketPath: path.join(agent.dir, 'absent.sock'), attempts: 100, backoff: [50, 50] });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const { err, took } = await timed(() => c.get('exchange', { signal: ac.signal }));
    assert.equal(err.name, 'AbortError');
    assert.ok(took < 1000);
  });

  test('bad options', () => {
    for (const o of [{ attempts: 0 }, { timeoutMs: 0 }, { backoff: [100, 50] }, { maxRps: -1 }, { waitTimeoutMs: 10 }]) {
      assert.throws(() => new Client({ socketPath: agent.socket, ...o }), RangeError, JSON.stringify(o));
    }
  });
});

describe('restart', () => {
  test('get waits for the agent', async () => {
    await agent.main.stop();
    const up = new Promise((r) => setTimeout(() => r(agent.main.start()), 400));
    const c = fast({ attempts: 100, backoff: [20, 50] });
    try {
      assert.equal((await c.get('broker-oauth')).version, 1);
    } finally {
      await up;
      c.close();
    }
  });

  test('stale connections after a restart', async () => {
    // Kept-alive connections the old agent closed are replaced without
    // using up a try (attempts: 1).
    const c = fast({ attempts: 1 });
    try {
      await Promise.all([1, 2, 3].map(() => c.get('broker-oauth')));
      assert.ok(Object.values(c._agent.freeSockets).flat().length >= 2);
      await agent.restart();
      assert.equal((await c.get('broker-oauth')).version, 1);
    } finally {
      c.close();
    }
  });
});

describe('watch', () => {
  test('across a rotation and an agent restart', async () => {
    const warnings = [];
    const c = fast({ waitTimeoutMs: 2000, logger: { warn: (m) => warnings.push(m) } });
    const ac = new AbortController();
    const it = c.watch('exchange', { signal: ac.signal });
    const first = (await next(it)).value;
    const v = first.version;
    assert.equal(v, await agent.currentVersion());

    await agent.rotate({ api_key: `FAKE-node-${v + 1}` });
    const second = (await next(it)).value;
    assert.equal(second.version, v + 1);
    assert.equal(second.field('api_key'), `FAKE-node-${v + 1}`);
    assert.equal(second.field('api_secret'), first.field('api_secret'));

    // The agent restarts while the next long poll is parked.
    const parked = next(it, 30000);
    while (Object.values(c._agent.sockets).flat().length === 0) await new Promise((r) => setTimeout(r, 5));
    await agent.restart();
    await agent.rotate({ api_key: `FAKE-node-${v + 2}` });
    const third = (await parked).value;
    assert.equal(third.version, v + 2);
    assert.equal(third.field('api_key'), `FAKE-node-${v + 2}`);
    assert.ok(warnings.some((w) => w.includes('retrying')), 'the restart should have been reported');
    assert.ok(!warnings.join('\n').includes('FAKE'));

    // The signal ends the iteration, even while a long poll is parked.
    const pending = next(it, 5000);
    setTimeout(() => ac.abort(), 100);
    assert.deepEqual(await pending, { value: undefined, done: true });
    c.close();
  });

  test('close() ends a watch', async () => {
    const c = fast({ waitTimeoutMs: 30000 });
    const it = c.watch('broker-oauth');
    assert.equal((await next(it)).value.version, 1);
    const pending = next(it, 5000);
    setTimeout(() => c.close(), 100);
    assert.deepEqual(await pending, { value: undefined, done: true });
  });

  test('NotFoundError and BadRequestError are thrown at once', async () => {
    const c = fast();
    const start = performance.now();
    await assert.rejects(next(c.watch('nope'), 5000), NotFoundError);
    await assert.rejects(next(c.watch('Not A Name'), 5000), BadRequestError);
    assert.ok(performance.now() - start < 1000);
    c.close();
  });

  test('waits for the first version of a set not fetched yet', async () => {
    const other = await agent.runAgent('later', ['--credential', 'later=secret/demo/later;optional',
      '--credential', 'exchange=secret/demo/exchange']);
    const c = fast({ socketPath: other.socket, waitTimeoutMs: 5000 });
    try {
      const it = c.watch('later');
      const pending = next(it);
      let settled = false;
      pending.then(() => (settled = true), () => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(settled, false);
      await agent.creds('put', 'secret/demo/later', { token: 'FAKE-later-1' });
      const cred = (await pending).value;
      assert.equal(cred.name, 'later');
      assert.equal(cred.version, 1);
      assert.equal(cred.field('token'), 'FAKE-later-1');
    } finally {
      c.close();
      await other.stop();
    }
  });
});

describe('rate limit', () => {
  test('maxRps', async () => {
    const c = fast({ maxRps: 20 });
    const start = performance.now();
    for (let i = 0; i < 30; i++) await c.health();
    const took = performance.now() - start;
    c.close();
    // a burst of 20, then 10 more at 20/s
    assert.ok(took >= 500 * 0.95, `30 requests at maxRps 20 took ${took}ms`);
    assert.ok(took < 5000);
  });

  test('no limit: not slowed', async () => {
    const c = fast();
    const start = performance.now();
    for (let i = 0; i < 30; i++) await c.health();
    c.close();
    assert.ok(performance.now() - start < 450);
  });

  test('token bucket', () => {
    let now = 100;
    const b = new TokenBucket(4, () => now);
    assert.deepEqual([b.reserve(), b.reserve(), b.reserve(), b.reserve()], [0, 0, 0, 0]);
    assert.equal(b.reserve(), 250);
    assert.equal(b.reserve(), 500);
    now += 0.5;
    assert.equal(b.reserve(), 250);
    now += 10;
    assert.deepEqual([b.reserve(), b.reserve(), b.reserve(), b.reserve()], [0, 0, 0, 0]);
    assert.ok(b.reserve() > 0);
  });

  test('back-off doubles with jitter up to the cap', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, 100, 1000, () => 1)), [100, 200, 400, 800, 1000, 1000]);
    assert.equal(backoffDelay(3, 100, 1000, () => 0), 200);
  });
});

describe('decoding', () => {
  test('times and expiry', () => {
    const c = toCredential({ name: 'a', version: 2, fields: { k: 'FAKE' }, fetched_at: '2026-12-06T09:24:21.874800407Z', expires_at: '2026-12-07T11:00:00+02:00' });
    assert.equal(c.fetchedAt.toISOString(), '2026-12-06T09:24:21.874Z');
    assert.equal(c.expiresAt.toISOString(), '2026-12-07T09:00:00.000Z');
    assert.equal(toCredential({ name: 'a', version: 1, fields: {} }).expiresAt, null);
  });

  test('bad answers', () => {
    for (const doc of [{ name: 'a' }, { name: 'a', version: 'x', fields: {} }, { name: 'a', version: 1, fields: {}, fetched_at: 'yesterday' }]) {
      assert.throws(() => toCredential(doc), (e) => e instanceof CredletError && e.code === 'bad_answer');
    }
    assert.throws(() => decode(200, 'OK', Buffer.from('not json')), (e) => e.code === 'bad_answer');
    assert.throws(() => decode(502, 'Bad Gateway', Buffer.alloc(0)), (e) => e.status === 502 && e.code === 'http_502' && isTransient(e));
    assert.equal(decode(304, 'Not Modified', Buffer.alloc(0)), null);
  });
});

describe('redaction', () => {
  test('a credential never shows a value', async () => {
    const c = fast();
    const cred = await c.get('broker-oauth');
    c.close();
    assert.ok(cred.field('refresh_token').includes('FAKE'));
    const outs = [
      util.inspect(cred), util.inspect(cred, { showHidden: true, depth: 10 }), util.inspect([cred]),
      util.format('%s %o %O %j %d', cred, cred, cred, cred, cred), JSON.stringify(cred), JSON.stringify({ c: cred }),
      String(cred), `${cred}`, cred + '',
    ];
    for (const o of outs) {
      assert.ok(!o.includes('FAKE'), `a value is printed: ${o}`);
      assert.ok(o.includes('broker-oauth'), o);
      assert.ok(o.includes('REDACTED') || o === 'NaN', o);
    }
    assert.ok(String(cred).includes('v1') && String(cred).includes('refresh_token'));
    // no enumerable property holds a value
    assert.ok(!JSON.stringify({ ...cred }).includes('FAKE'));
    assert.ok(!JSON.stringify(Object.entries(cred)).includes('FAKE'));
    assert.deepEqual(Object.keys(cred).sort(), ['expiresAt', 'fetchedAt', 'name', 'version']);
  });

  test('errors carry no value', async () => {
    const c = fast();
    const { err } = await timed(() => c.get('nope'));
    c.close();
    assert.ok(!(util.inspect(err) + err.message).includes('FAKE'));
  });
});
