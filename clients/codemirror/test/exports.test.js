// The extension as Node sees it: it loads (CodeMirror's modules run without
// a DOM until an editor is made) and exports what its types declare. The
// editor itself is tested in Chromium (tests/browser/editors.test.js); the
// line-break mapping it relies on, in the SDK (clients/js/test/lines.test.js).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

test('the extension loads and exports what its types declare', async () => {
  const module = await import('../src/index.js');
  const declared = [...readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8').matchAll(/^export (?:function|const) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(declared.sort(), ['chorus', 'refreshCarets', 'remoteChange']);
  for (const name of declared) assert.ok(module[name], name);
  assert.equal(typeof module.chorus, 'function');
});
