#!/usr/bin/env node
// credlet's example trading bot in Node, the twin of examples/tradingbot
// (Go). It reads its exchange credentials from the credlet agent in its pod
// over the Unix socket (@credlet/client), switches to each new version the
// moment it is rotated, and uses the key only to sign a fake order locally:
// nothing is sent anywhere and no value is ever printed.
//
//   CREDLET_SOCKET=/credlet/run/agent.sock node bot.mjs --credential exchange
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';

import { Client, ForbiddenError, NotFoundError } from '@credlet/client';

const { values: args } = parseArgs({
  options: {
    socket: { type: 'string', default: process.env.CREDLET_SOCKET || '' }, // '' → $CREDLET_SOCKET, else /credlet/run/agent.sock
    credential: { type: 'string', default: process.env.TRADINGBOT_CREDENTIAL || 'exchange' },
    'key-field': { type: 'string', default: 'api_key' },
    'secret-field': { type: 'string', default: 'api_secret' },
    'order-every-ms': { type: 'string', default: '2000' },
  },
});

const name = args.credential;
const keyField = args['key-field'];
const secretField = args['secret-field'];
const every = Number(args['order-every-ms']);
if (!(every > 0)) {
  console.error(`nodebot: --order-every-ms ${args['order-every-ms']}: want milliseconds > 0`);
  process.exit(2);
}

const client = new Client({ socketPath: args.socket || undefined, backoff: [200, 5000] });
const stop = new AbortController();
for (const sig of ['SIGTERM', 'SIGINT']) process.once(sig, () => stop.abort());

/** The signer for the credential version in use; orders in flight keep theirs. */
let signer = null;

function use(cred) {
  const key = cred.field(keyField);
  const secret = cred.field(secretField);
  if (key === undefined || secret === undefined) {
    console.log(`nodebot: version ${cred.version} of ${name} lacks ${keyField} or ${secretField} (has ${cred.fieldNames.join(',')}); keeping version ${signer?.version ?? 0}`);
    return;
  }
  const prev = signer;
  signer = { version: cred.version, apiKey: key, secret: Buffer.from(secret) };
  if (prev === null) {
    console.log(`nodebot: using ${name} version ${cred.version} (fields ${cred.fieldNames.join(',')})`);
  } else if (prev.version !== cred.version) {
    console.log(`nodebot: now using ${name} version ${cred.version} (was ${prev.version}), no restart`);
    prev.secret.fill(0);
  }
}

// Signs a fake order the way exchanges' REST APIs want it (HMAC-SHA256
// over the request) and "sends" it nowhere.
let order = 0;
function placeOrder() {
  const s = signer;
  if (s === null) return;
  order++;
  const body = `symbol=FAKEUSDT&side=BUY&type=LIMIT&quantity=1&price=1.00&timestamp=${Date.now()}`;
  const sig = crypto.createHmac('sha256', s.secret).update(body).digest('hex');
  void s.apiKey; // would go in the X-API-KEY header
  console.log(`nodebot: signed fake order #${order} with ${name} version ${s.version} (signature ${sig.slice(0, 8)}…, not sent)`);
}

async function main() {
  console.log(`nodebot: waiting for credential "${name}" from the agent`);
  // The first get fails fast with a clear message when this process is not
  // allowed or the set does not exist.
  try {
    use(await client.get(name, { signal: stop.signal }));
  } catch (err) {
    if (stop.signal.aborted) return 0;
    if (err instanceof ForbiddenError) {
      console.error(`nodebot: the agent refuses this process (uid ${process.getuid()}): run as the app's user or allow it with --allow-uid`);
    } else if (err instanceof NotFoundError) {
      console.error(`nodebot: the agent has no credential set "${name}"`);
    } else {
      console.error(`nodebot: ${err.message}`);
    }
    return 1;
  }
  const tick = setInterval(placeOrder, every);
  try {
    // Each new version, within milliseconds of its commit, until stopped.
    for await (const cred of client.watch(name, { signal: stop.signal })) use(cred);
  } catch (err) {
    console.error(`nodebot: ${err.message}`);
    return 1;
  } finally {
    clearInterval(tick);
    client.close();
  }
  console.log('nodebot: stopping');
  return 0;
}

process.exitCode = await main();
