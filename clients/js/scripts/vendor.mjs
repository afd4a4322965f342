// Builds vendor/ot-text-unicode.js: ot-text-unicode (CommonJS) and its
// dependency bundled as one ES module, so browsers can load the SDK without a
// bundler (map the bare specifier 'ot-text-unicode' to this file with an
// import map). Run with `npm run vendor` after changing the dependency.

import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

function pkg(name) {
  let dir = dirname(require.resolve(name));
  for (;;) {
    try {
      const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      if (meta.name === name) return meta;
    } catch {
      // keep looking upwards
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`package.json of ${name} not found`);
    dir = up;
  }
}

const ot = pkg('ot-text-unicode');
const deps = Object.keys(ot.dependencies || {}).map(pkg);
const describe = (p) => `${p.name} ${p.version} (${p.license} license${p.author ? ', ' + (p.author.name || p.author) : ''})`;
const banner = [
  '/*!',
  ` * ${describe(ot)}`,
  ...deps.map((d) => ` * bundled with its dependency ${describe(d)}`),
  ` * ${ot.homepage || ''}`,
  ' *',
  ' * Vendored for the Chorus JavaScript SDK as one ES module (built by',
  ' * `npm run vendor` in clients/js with esbuild). Do not edit by hand.',
  ' * The default export is the package\'s CommonJS exports object:',
  ' * `(await import(...)).default.type` is the OT type.',
  ' */',
].join('\n');

const outfile = join(root, 'vendor', 'ot-text-unicode.js');
mkdirSync(dirname(outfile), { recursive: true });
await build({
  entryPoints: [require.resolve('ot-text-unicode')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2019',
  outfile,
  banner: { js: banner },
  legalComments: 'inline',
  logLevel: 'warning',
});
console.log(`wrote ${outfile}`);
