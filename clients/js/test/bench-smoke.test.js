// The SDK's benchmark drives TextDoc and the client's frame handler through
// stand-ins; when the SDK's internals move, the stand-ins must move with
// them. A tiny run here keeps the benchmark working (it measures nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bench = fileURLToPath(new URL('../bench/textdoc.js', import.meta.url));

test('the TextDoc benchmark runs and reports every measure', () => {
  const out = execFileSync(process.execPath, [bench, '--size', '20000', '--small', '1000', '--rounds', '1', '--runs', '1', '--batch', '50'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  for (const measure of ['remote op', 'frame to event', 'local edit', 'setSelection', 'remoteSelections (4)']) {
    const line = out.split('\n').find((l) => l.startsWith(measure));
    assert.ok(line, `no "${measure}" line in:\n${out}`);
    const ratio = line.match(/([0-9.]+)x/);
    assert.ok(ratio && Number(ratio[1]) > 0, `no ratio for "${measure}": ${line}`);
  }
});
