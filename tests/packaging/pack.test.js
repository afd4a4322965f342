// The JavaScript packages as an application gets them, without a registry
// account: `npm pack` of every package, the tarballs installed together into
// a fresh project (with the peer dependencies an application brings:
// CodeMirror, React, ws), every entry point imported in Node, every `types`
// file present, and the installed SDK editing a document on a real
// `chorus serve`.

import { execFileSync, spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PACKAGES = ['js', 'textarea', 'codemirror', 'react'];
// What an application installs beside them (the versions the browser tests use).
const PEERS = ['@codemirror/state@6.7.6', '@codemirror/view@6.43.15', 'react@19.3.1', 'ws@8.23.0'];

const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('every package packs, installs into a fresh project and imports in Node', { timeout: 180_000 }, async () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-pack-'));
  try {
    const tarballs = path.join(work, 'tarballs');
    fs.mkdirSync(tarballs);
    const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', tarballs, ...PACKAGES.map((p) => path.join(repo, 'clients', p))], repo));
    assert.deepEqual(packed.map((p) => p.name).sort(), ['@chorus/client', '@chorus/codemirror', '@chorus/react', '@chorus/textarea']);
    for (const p of packed) {
      const files = p.files.map((f) => f.path);
      for (const needed of ['package.json', 'README.md', 'index.d.ts']) assert.ok(files.includes(needed), `${p.name} ships ${needed}`);
      assert.ok(!files.some((f) => f.startsWith('test/') || f.includes('node_modules')), `${p.name} ships no tests or dependencies: ${files}`);
    }

    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }));
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...packed.map((p) => path.join(tarballs, p.filename)), ...PEERS], app);

    // Every `exports` entry resolves, with its types file.
    for (const name of packed.map((p) => p.name)) {
      const dir = path.join(app, 'node_modules', name);
      const meta = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      for (const [entry, target] of Object.entries(meta.exports)) {
        assert.ok(fs.existsSync(path.join(dir, target.types)), `${name}${entry.slice(1)}: types ${target.types}`);
        assert.ok(fs.existsSync(path.join(dir, target.default)), `${name}${entry.slice(1)}: ${target.default}`);
      }
    }

    const server = await startServer();
    try {
      const script = `
        import WebSocket from 'ws';
        import { connect } from '@chorus/client';
        import { bindTextarea } from '@chorus/textarea';
        import { chorus } from '@chorus/codemirror';
        import { ChorusProvider, useRoom, useMembers, useCursors, useValue, useText } from '@chorus/react';
        import { useCodeMirror } from '@chorus/react/codemirror';
        for (const [name, f] of Object.entries({ bindTextarea, chorus, ChorusProvider, useRoom, useMembers, useCursors, useValue, useText, useCodeMirror })) {
          if (typeof f !== 'function') throw new Error(name + ' is not a function');
        }
        const client = connect(${JSON.stringify(server.ws)}, { WebSocket, user: 'packed' });
        const doc = await (await client.join('packaging')).openDoc('d');
        doc.insert(0, 'from the installed package 😀');
        await doc.synced();
        console.log(JSON.stringify({ text: doc.text, version: doc.version }));
        client.close();
      `;
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: app, encoding: 'utf8', timeout: 30_000 });
      assert.deepEqual(JSON.parse(out), { text: 'from the installed package 😀', version: 1 });
      const res = await fetch(`${server.http}/v1/rooms/packaging/docs/d`);
      assert.equal((await res.json()).text, 'from the installed package 😀');
    } finally {
      server.stop();
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

/** `chorus serve --dev` on a free port ($CHORUS_BIN, or the debug build). */
async function startServer() {
  const bin = process.env.CHORUS_BIN || path.join(repo, 'target/debug/chorus');
  const child = spawn(bin, ['serve', '--dev', '--memory', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, CHORUS_LOG: 'warn' } });
  const addr = await new Promise((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`${bin} exited with ${code}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on http:\/\/(\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
  });
  return { http: `http://${addr}`, ws: `ws://${addr}/v1/ws`, stop: () => child.kill('SIGKILL') };
}
