// The require entry and the import entry give the same classes, by the
// package's own name (package.json "exports").
const assert = require('node:assert/strict');
const { test } = require('node:test');

test('require and import share one implementation', async () => {
  const viaRequire = require('@credlet/client');
  const viaImport = await import('@credlet/client');
  for (const name of ['Client', 'Credential', 'CredletError', 'ForbiddenError', 'NotFoundError', 'NotReadyError',
    'BadRequestError', 'UnavailableError', 'DEFAULT_SOCKET']) {
    assert.ok(viaRequire[name] !== undefined, `require lacks ${name}`);
    assert.equal(viaImport[name], viaRequire[name], name);
  }
  const err = new viaRequire.NotFoundError(404, 'not_found', 'x');
  assert.ok(err instanceof viaImport.CredletError);
  const pkg = require('@credlet/client/package.json');
  assert.equal(pkg.name, '@credlet/client');
  assert.deepEqual(pkg.dependencies, undefined, 'no runtime dependencies');
});
