// Seeded randomness for tests (mulberry32): every random test prints its
// seed, and SEED=<n> replays it. No dependencies, so the browser tests
// (tests/browser) use it too.

/** A PRNG from `seed`: `rand()` in [0, 1), with `int(n)` and `pick(list)`. */
export function prng(seed) {
  let state = seed >>> 0;
  const rand = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  rand.int = (n) => Math.floor(rand() * n);
  rand.pick = (xs) => xs[rand.int(xs.length)];
  return rand;
}

/** A PRNG whose seed comes from SEED or is random, and is printed with `label`. */
export function seeded(label) {
  const seed = process.env.SEED ? Number(process.env.SEED) : Math.floor(Math.random() * 2 ** 32);
  console.log(`# ${label}: seed ${seed} (rerun with SEED=${seed})`);
  return prng(seed);
}
