/**
 * `node --import tsx bench/profile.ts <file.cpuprofile> [top] [last-seconds]`: where a CPU
 * profile written by `npm run bench -- --profile` spent its samples, by
 * function (self time) and by package or source folder (self time summed),
 * so a missed goal can be traced to what limits it.
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  /** Microseconds between consecutive samples. */
  timeDeltas: number[];
}

/** The samples taken in the last `seconds` of the profile (all of them when unset): the measured run, not start-up. */
function lastSamples(profile: CpuProfile, seconds: number | undefined): number[] {
  if (!seconds) return profile.samples;
  const times: number[] = [];
  let t = 0;
  for (const delta of profile.timeDeltas) {
    t += delta;
    times.push(t);
  }
  const from = t - seconds * 1e6;
  return profile.samples.filter((_, i) => (times[i] ?? 0) >= from);
}

/** node_modules/<package> or src/<folder>, else the file name: what to blame. */
function ownerOf(url: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1]) return pkg[1];
  const src = /\/(src|bench)\/([^/]+)/.exec(url);
  if (src) return `${src[1]}/${src[2]}`;
  return url ? (url.split('/').pop() ?? url) : '(native / V8)';
}

/** For each sample, every distinct function on its stack: the share of samples a function was running or waiting on a callee. */
function inclusive(profile: CpuProfile, samples: number[], match: RegExp): Map<string, number> {
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const counts = new Map<string, number>();
  for (const id of samples) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame?.functionName || !match.test(frame.url)) continue;
      seen.add(`${frame.functionName} ${ownerOf(frame.url)}:${frame.lineNumber + 1}`);
    }
    for (const name of seen) counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

function table(counts: Map<string, number>, total: number, top: number): string {
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, n]) => `${((100 * n) / total).toFixed(1).padStart(5)}%  ${name}`)
    .join('\n');
}

async function main(): Promise<void> {
  const [file, topArg, lastArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: node --import tsx bench/profile.ts <file.cpuprofile> [top] [last-seconds]');
  const top = Number(topArg ?? 25);
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const byOwner = new Map<string, number>();
  let idle = 0;
  const samples = lastSamples(profile, lastArg ? Number(lastArg) : undefined);
  for (const id of samples) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    // Waiting for I/O is not where CPU went: counted apart, left out of the percentages.
    if (frame.functionName === '(idle)') {
      idle += 1;
      continue;
    }
    const name = `${frame.functionName || '(anonymous)'} ${ownerOf(frame.url)}:${frame.lineNumber + 1}${process.env.PROFILE_URLS ? ` ${frame.url}` : ''}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + 1);
    byOwner.set(ownerOf(frame.url), (byOwner.get(ownerOf(frame.url)) ?? 0) + 1);
  }
  const total = samples.length - idle;
  process.stdout.write(
    `${total} busy samples (+${idle} idle); percentages of the busy ones\n\nself time by package or folder\n${table(byOwner, total, top)}\n\n`,
  );
  process.stdout.write(`self time by function\n${table(byFunction, total, top)}\n\n`);
  const ours = inclusive(
    profile,
    samples.filter((id) => byId.get(id)?.callFrame.functionName !== '(idle)'),
    /\/src\//,
  );
  process.stdout.write(`total time (self + callees, synchronous part only) of our functions (src/)\n${table(ours, total, top)}\n`);
}

await main();
