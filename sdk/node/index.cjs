'use strict';
// @credlet/client: read credentials from the credlet agent over its Unix
// socket. Node's standard library only. index.mjs re-exports this file, so
// `import` and `require` share one set of classes (instanceof works across
// both).

const http = require('node:http');
const util = require('node:util');

const DEFAULT_SOCKET = '/credlet/run/agent.sock';
const REDACTED = '[REDACTED]';
const MAX_BODY = 1 << 20;
const MAX_IDLE = 4;

// ---- errors ---------------------------------------------------------------

/** An error answer from the agent, or a failure to reach it (status 0). */
class CredletError extends Error {
  constructor(status, code, detail, options) {
    super(`credlet agent: ${status} ${code}: ${detail}`, options);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}
/** 403: this process's UID/GID is not in the agent's --allow-uid/--allow-gid. */
class ForbiddenError extends CredletError {}
/** 404: the agent has no such credential set. */
class NotFoundError extends CredletError {}
/** 503: the set has not been fetched yet (retried before it is thrown). */
class NotReadyError extends CredletError {}
/** 400: a malformed request, for example an invalid set name. */
class BadRequestError extends CredletError {}
/** The socket is absent or the agent did not answer, after the retries. */
class UnavailableError extends CredletError {}
for (const c of [CredletError, ForbiddenError, NotFoundError, NotReadyError, BadRequestError, UnavailableError]) {
  Object.defineProperty(c.prototype, 'name', { value: c.name, writable: true, configurable: true });
}

const BY_CODE = {
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  not_ready: NotReadyError,
  bad_request: BadRequestError,
};

function fromAnswer(status, code, detail) {
  const C = BY_CODE[code] || CredletError;
  return new C(status, code, detail);
}

/** Whether trying again may help: unreachable, restarting, not fetched yet (any 5xx). */
function isTransient(err) {
  if (err instanceof UnavailableError) return err.code !== 'closed';
  if (err instanceof CredletError) return err.status >= 500;
  return false;
}

// ---- answers --------------------------------------------------------------

/**
 * One version of a credential set. The values are reachable only through
 * `fields` and `field()`: util.inspect, console.log, JSON.stringify,
 * String() and template literals print the name, version and field names
 * with [REDACTED] for the values, and the object has no enumerable
 * property holding a value (spreading it copies none).
 */
class Credential {
  #fields;

  constructor(name, version, fields, fetchedAt = null, expiresAt = null) {
    this.name = name;
    this.version = version;
    this.fetchedAt = fetchedAt;
    this.expiresAt = expiresAt;
    this.#fields = Object.freeze({ ...fields });
    Object.freeze(this);
  }

  /** Field name → value (frozen). */
  get fields() {
    return this.#fields;
  }

  /** One field's value, or undefined. */
  field(name) {
    return Object.prototype.hasOwnProperty.call(this.#fields, name) ? this.#fields[name] : undefined;
  }

  /** The field names, sorted. */
  get fieldNames() {
    return Object.keys(this.#fields).sort();
  }

  toString() {
    return `credential ${this.name} v${this.version} fields [${this.fieldNames.join(' ')}] values ${REDACTED}`;
  }

  toJSON() {
    const fields = {};
    for (const k of this.fieldNames) fields[k] = REDACTED;
    return { name: this.name, version: this.version, fields, fetchedAt: this.fetchedAt, expiresAt: this.expiresAt };
  }

  [util.inspect.custom](depth, options, inspect = util.inspect) {
    return `Credential ${inspect({ name: this.name, version: this.version, fields: this.fieldNames, values: REDACTED }, options)}`;
  }
}

function parseTime(s) {
  if (s === undefined || s === null) return null;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new Error('bad time');
  return d;
}

function badAnswer(what) {
  return new CredletError(200, 'bad_answer', `unreadable ${what} from the agent`);
}

function toCredential(doc) {
  try {
    if (typeof doc.name !== 'string' || !Number.isInteger(doc.version) || typeof doc.fields !== 'object' || doc.fields === null) {
      throw new Error('shape');
    }
    const fields = {};
    for (const [k, v] of Object.entries(doc.fields)) fields[k] = String(v);
    return new Credential(doc.name, doc.version, fields, parseTime(doc.fetched_at), parseTime(doc.expires_at));
  } catch {
    throw badAnswer('credential');
  }
}

function toInfos(doc) {
  try {
    return doc.credentials.map((c) => ({ name: String(c.name), version: Number(c.version), fetchedAt: parseTime(c.fetched_at) }));
  } catch {
    throw badAnswer('list');
  }
}

function toHealth(doc) {
  try {
    const credentials = {};
    for (const [k, v] of Object.entries(doc.credentials || {})) {
      credentials[k] = {
        version: Number(v.version),
        ageSeconds: v.age_seconds ?? null,
        lastError: v.last_error || null,
        optional: Boolean(v.optional),
      };
    }
    return { ready: doc.ready === true, credentials };
  } catch {
    throw badAnswer('health');
  }
}

// ---- retries and the rate limit --------------------------------------------

/** The pause before the attempt-th retry: doubling, capped, jittered to [d/2, d]. */
function backoffDelay(attempt, firstMs, longestMs, rand = Math.random) {
  const d = Math.min(longestMs, firstMs * 2 ** Math.min(attempt - 1, 30));
  return d / 2 + (rand() * d) / 2;
}

/** Up to `rate` requests at once, then `rate` a second; the clock is injectable. */
class TokenBucket {
  constructor(rate, now = () => performance.now() / 1000) {
    this.rate = rate;
    this.burst = Math.max(1, rate);
    this._now = now;
    this._tokens = this.burst;
    this._last = now();
  }

  /** Takes a token; returns the milliseconds to wait before using it. */
  reserve() {
    const t = this._now();
    this._tokens = Math.min(this.burst, this._tokens + (t - this._last) * this.rate);
    this._last = t;
    this._tokens -= 1;
    return this._tokens >= 0 ? 0 : (-this._tokens / this.rate) * 1000;
  }
}

function abortError(signal) {
  return signal.reason instanceof Error ? signal.reason : Object.assign(new Error('aborted'), { name: 'AbortError' });
}

/** Resolves after ms, or rejects when one of the signals aborts. */
function sleep(ms, ...signals) {
  return new Promise((resolve, reject) => {
    const live = signals.filter(Boolean);
    const hit = live.find((s) => s.aborted);
    if (hit) return reject(abortError(hit));
    const done = (fn) => {
      clearTimeout(timer);
      for (const s of live) s.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = (e) => done(() => reject(abortError(e.target)));
    const timer = setTimeout(() => done(resolve), ms);
    for (const s of live) s.addEventListener('abort', onAbort, { once: true });
  });
}

// ---- the client -------------------------------------------------------------

function checkOptions(o) {
  const pos = (v) => typeof v === 'number' && v > 0 && Number.isFinite(v);
  if (!pos(o.timeoutMs)) throw new RangeError(`timeoutMs ${o.timeoutMs}: want milliseconds > 0`);
  if (!Number.isInteger(o.attempts) || o.attempts < 1) throw new RangeError(`attempts ${o.attempts}: want an integer >= 1`);
  if (!Array.isArray(o.backoff) || o.backoff.length !== 2 || !pos(o.backoff[0]) || !(o.backoff[1] >= o.backoff[0])) {
    throw new RangeError(`backoff ${JSON.stringify(o.backoff)}: want [firstMs, longestMs] with 0 < firstMs <= longestMs`);
  }
  if (o.maxRps !== null && o.maxRps !== undefined && !pos(o.maxRps)) {
    throw new RangeError(`maxRps ${o.maxRps}: want null (no limit) or requests per second > 0`);
  }
  if (!(o.waitTimeoutMs >= 1000)) throw new RangeError(`waitTimeoutMs ${o.waitTimeoutMs}: want milliseconds >= 1000`);
}

/**
 * Reads credentials from one credlet agent. Requests share kept-alive
 * connections; transient failures are retried with exponential back-off
 * and jitter; `maxRps` caps the request rate.
 */
class Client {
  constructor(options = {}) {
    const o = {
      socketPath: options.socketPath || process.env.CREDLET_SOCKET || DEFAULT_SOCKET,
      timeoutMs: options.timeoutMs ?? 10000,
      attempts: options.attempts ?? 5,
      backoff: options.backoff ?? [100, 5000],
      maxRps: options.maxRps ?? null,
      waitTimeoutMs: options.waitTimeoutMs ?? 60000,
    };
    checkOptions(o);
    this.socketPath = o.socketPath;
    this.timeoutMs = o.timeoutMs;
    this.attempts = o.attempts;
    this.backoff = [o.backoff[0], o.backoff[1]];
    this.maxRps = o.maxRps;
    this.waitTimeoutMs = o.waitTimeoutMs;
    this.logger = options.logger === undefined ? console : options.logger;
    this._bucket = o.maxRps ? new TokenBucket(o.maxRps) : null;
    this._agent = new http.Agent({ keepAlive: true, maxFreeSockets: MAX_IDLE });
    this._closer = new AbortController();
  }

  /** The current version of a credential set. */
  async get(name, { signal } = {}) {
    return toCredential(await this._call(credentialPath(name), signal));
  }

  /**
   * The version before the current one, which the agent keeps after a
   * rotation (its rollback pointer); NotFoundError when it holds none
   * (before its first rotation since it started). Audited by the agent.
   */
  async getPrevious(name, { signal } = {}) {
    return toCredential(await this._call(`${credentialPath(name)}?version=previous`, signal));
  }

  /** Every set the agent holds: { name, version, fetchedAt } (no values). */
  async list({ signal } = {}) {
    return toInfos(await this._call('/v1/credentials', signal));
  }

  /** The agent's readiness and each set's state. */
  async health({ signal } = {}) {
    return toHealth(await this._call('/v1/health', signal));
  }

  /**
   * Yields the current version of a set, then each new one as the agent
   * commits it (long poll). Transient failures are retried (and reported
   * to logger.warn) for as long as it takes, so a watch survives an agent
   * restart; ForbiddenError, NotFoundError and BadRequestError are thrown
   * at once. Ends when `signal` aborts or the client is closed.
   */
  async *watch(name, { signal, waitTimeoutMs } = {}) {
    const wt = waitTimeoutMs ?? this.waitTimeoutMs;
    const base = `${credentialPath(name)}?timeout=${Math.max(1, Math.ceil(wt / 1000))}&wait=`;
    let last = 0;
    let failures = 0;
    while (!this._closer.signal.aborted && !signal?.aborted) {
      let res;
      try {
        res = await this._once(base + last, wt + this.timeoutMs, signal);
      } catch (err) {
        if (this._closer.signal.aborted || signal?.aborted) return;
        if (!isTransient(err)) throw err;
        failures++;
        this.logger?.warn?.(`credlet: watching ${name}: ${err.message}; retrying (attempt ${failures})`);
        try {
          await sleep(backoffDelay(failures, ...this.backoff), signal, this._closer.signal);
        } catch {
          return;
        }
        continue;
      }
      failures = 0;
      if (res.status === 304) continue;
      const cred = toCredential(res.body);
      last = cred.version;
      yield cred;
    }
  }

  /** Closes the connections and ends running watches; later calls throw UnavailableError (code "closed"). */
  close() {
    this._closer.abort();
    this._agent.destroy();
  }

  [util.inspect.custom]() {
    return `Client { socketPath: ${util.inspect(this.socketPath)} }`;
  }

  async _call(path, signal) {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this._once(path, this.timeoutMs, signal)).body;
      } catch (err) {
        if (!isTransient(err) || attempt >= this.attempts || this._closer.signal.aborted) throw err;
        await this._pause(backoffDelay(attempt, ...this.backoff), signal);
      }
    }
  }

  /** Sleeps ms; rejects with the signal's reason, or UnavailableError "closed" on close(). */
  async _pause(ms, signal) {
    try {
      await sleep(ms, signal, this._closer.signal);
    } catch (err) {
      if (this._closer.signal.aborted) throw new UnavailableError(0, 'closed', 'client closed');
      throw err;
    }
  }

  /** One GET after the rate limit: { status, body } (body null for 304). */
  async _once(path, timeoutMs, signal) {
    if (this._bucket) {
      const wait = this._bucket.reserve();
      if (wait > 0) await this._pause(wait, signal);
    }
    for (let i = 0; ; i++) {
      if (this._closer.signal.aborted) throw new UnavailableError(0, 'closed', 'client closed');
      if (signal?.aborted) throw abortError(signal);
      try {
        return await this._exchange(path, timeoutMs, signal, i > 0);
      } catch (err) {
        if (err.reusedSocket && i === 0) continue; // the agent closed a kept-alive connection: once more, on a new one
        throw err;
      }
    }
  }

  /** One request and its answer; fresh: on a connection of its own, outside the pool. */
  _exchange(path, timeoutMs, signal, fresh) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn, v) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        this._closer.signal.removeEventListener('abort', onAbort);
        fn(v);
      };
      const req = http.request({
        socketPath: this.socketPath,
        path,
        method: 'GET',
        agent: fresh ? false : this._agent,
        headers: { Host: 'localhost', Accept: 'application/json' },
      });
      const onAbort = () => req.destroy(Object.assign(new Error('aborted'), { name: 'AbortError' }));
      signal?.addEventListener('abort', onAbort, { once: true });
      this._closer.signal.addEventListener('abort', onAbort, { once: true });
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('no answer in time'), { code: 'ETIMEDOUT' })));
      // A failed exchange: closed and aborted win over what the socket saw.
      const fail = (err) => {
        if (this._closer.signal.aborted) return finish(reject, new UnavailableError(0, 'closed', 'client closed'));
        if (signal?.aborted) return finish(reject, abortError(signal));
        const e = new UnavailableError(0, 'unavailable', `${this.socketPath}: ${describe(err)}`, { cause: err });
        Object.defineProperty(e, 'reusedSocket', { value: req.reusedSocket && err.code !== 'ETIMEDOUT' });
        finish(reject, e);
      };
      req.on('error', fail);
      req.on('response', (res) => {
        const chunks = [];
        let size = 0;
        res.on('data', (c) => {
          size += c.length;
          if (size > MAX_BODY) {
            req.destroy();
            finish(reject, new CredletError(res.statusCode, 'bad_answer', 'answer too large'));
            return;
          }
          chunks.push(c);
        });
        res.on('error', () => {}); // settled by 'close' below, or by req's 'error'
        res.on('close', () => {
          if (!res.complete) fail(Object.assign(new Error('the agent closed the connection mid-answer'), { code: 'ECONNRESET' }));
        });
        res.on('end', () => {
          try {
            finish(resolve, { status: res.statusCode, body: decode(res.statusCode, res.statusMessage, Buffer.concat(chunks)) });
          } catch (err) {
            finish(reject, err);
          }
        });
      });
      req.end();
    });
  }
}

function describe(err) {
  if (err.code === 'ETIMEDOUT') return 'no answer in time';
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return err.message.includes('mid-answer') ? err.message : 'the agent closed the connection';
  if (err.code === 'ENOENT') return 'no socket there (ENOENT)';
  if (err.code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  return err.code ? `${err.message} (${err.code})` : err.message;
}

function credentialPath(name) {
  return `/v1/credentials/${encodeURIComponent(String(name))}`;
}

/** The JSON of a 200 answer, null for 304; throws the error of any other. */
function decode(status, reason, buf) {
  if (status === 304) return null;
  let doc = null;
  try {
    doc = buf.length ? JSON.parse(buf.toString('utf8')) : null;
  } catch {
    doc = null;
  }
  if (status === 200) {
    if (doc === null || typeof doc !== 'object') throw badAnswer('answer');
    return doc;
  }
  const e = doc && typeof doc === 'object' ? doc.error : null;
  if (e && typeof e.code === 'string' && e.code) throw fromAnswer(status, e.code, String(e.message ?? ''));
  throw fromAnswer(status, `http_${status}`, reason || '');
}

module.exports = {
  Client,
  Credential,
  CredletError,
  ForbiddenError,
  NotFoundError,
  NotReadyError,
  BadRequestError,
  UnavailableError,
  DEFAULT_SOCKET,
  // for tests
  _internal: { TokenBucket, backoffDelay, isTransient, toCredential, decode },
};
