// The real credlet-agent for the SDK tests: `credlet-agent dev` on its
// embedded encrypted file source, plus `credlet-agent run` instances on the
// same file for what dev does not cover (another allowed uid, a set not in
// the file yet). Rotations go through `credlet-agent creds`.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BINARY = process.env.CREDLET_AGENT || path.resolve(here, '..', '..', '..', 'bin', 'credlet-agent');

/** Throws (so every test fails) when the agent binary is missing. */
export function requireBinary() {
  try {
    fs.accessSync(BINARY, fs.constants.X_OK);
  } catch {
    throw new Error(`${BINARY} is missing: run \`make build\` (or set CREDLET_AGENT)`);
  }
}

/** One GET with plain http, independent of the SDK. */
export function rawGet(socketPath, p) {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: p, agent: false, timeout: 2000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Process {
  constructor(args, socket, logPath) {
    this.args = args;
    this.socket = socket;
    this.logPath = logPath;
    this.proc = null;
  }

  async start(waitReady = true) {
    const log = fs.openSync(this.logPath, 'a');
    this.proc = spawn(BINARY, this.args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    let exited = null;
    this.proc.once('exit', (code) => (exited = code));
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (exited !== null) throw new Error(`agent exited ${exited}:\n${this.log()}`);
      try {
        const r = await rawGet(this.socket, '/v1/health');
        if (r.status !== 200 || !waitReady || JSON.parse(r.body).ready) return;
      } catch {
        // not up yet
      }
      await sleep(20);
    }
    throw new Error(`agent socket ${this.socket} not ready in 15s:\n${this.log()}`);
  }

  async stop() {
    const p = this.proc;
    if (!p) return;
    this.proc = null;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 15000);
    await exited;
    clearTimeout(t);
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }
}

/**
 * `credlet-agent dev --dir D`: demo sets `exchange` (api_key, api_secret)
 * and `broker-oauth` (refresh_token), version 1, values FAKE-demo-...;
 * kept in D across a restart.
 */
export class DevAgent {
  static async start() {
    requireBinary();
    const a = new DevAgent();
    await a.main.start();
    return a;
  }

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cn')); // short: socket paths are limited to 107 bytes
    this.credentials = path.join(this.dir, 'credentials.enc');
    this.key = path.join(this.dir, 'master.key');
    this.main = new Process(['dev', '--dir', this.dir, '--listen', '127.0.0.1:0', '--log-format', 'text'],
      path.join(this.dir, 'run', 'agent.sock'), path.join(this.dir, 'dev.log'));
    this.socket = this.main.socket;
    this.extra = [];
  }

  /** Another agent (`credlet-agent run`) on the same encrypted file. */
  async runAgent(name, flags, waitReady = true) {
    const sock = path.join(this.dir, `${name}.sock`);
    const p = new Process(['run', '--source', `file:${this.credentials}`, '--master-key-file', this.key, '--socket', sock,
      '--secrets-dir', '', '--listen', '', '--audit-file', path.join(this.dir, `${name}.audit`), '--log-format', 'text', ...flags],
    sock, path.join(this.dir, `${name}.log`));
    this.extra.push(p);
    await p.start(waitReady);
    return p;
  }

  /** `credlet-agent creds put|rotate PATH field=@file ...`: values go through 0600 files. */
  async creds(command, kvPath, fields) {
    const args = ['creds', command, kvPath];
    const files = [];
    for (const [k, v] of Object.entries(fields)) {
      const f = path.join(this.dir, `v-${process.pid}-${files.length}`);
      fs.writeFileSync(f, v, { mode: 0o600 });
      files.push(f);
      args.push(`${k}=@${f}`);
    }
    args.push('--source', `file:${this.credentials}`, '--master-key-file', this.key);
    try {
      await promisify(execFile)(BINARY, args, { timeout: 30000 });
    } finally {
      for (const f of files) fs.rmSync(f, { force: true });
    }
  }

  rotate(fields) {
    return this.creds('rotate', 'secret/demo/exchange', fields);
  }

  async restart(downMs = 200) {
    await this.main.stop();
    await sleep(downMs);
    await this.main.start();
  }

  async currentVersion() {
    const r = await rawGet(this.socket, '/v1/credentials/exchange');
    return JSON.parse(r.body).version;
  }

  async close() {
    for (const p of this.extra) await p.stop();
    await this.main.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
