import { readFile } from 'node:fs/promises';
import autocannon from 'autocannon';

/** One scenario's numbers: successes per second and the latency of each request (or flow), in ms. */
export interface Measurement {
  /** Successful requests (2xx) or completed flows. */
  ok: number;
  /** Non-2xx answers, connection errors and timeouts. */
  failed: number;
  durationS: number;
  rps: number;
  p50: number;
  p99: number;
  /** Answers by status code (and `error` for requests that got none). */
  statusCodes: Record<string, number>;
  /** The first failure's message, for the report. */
  firstError?: string;
  /** CPU the server processes used per successful request (all their threads), in ms: comparable across busy and idle machines. */
  serverCpuMs?: number;
  /** Cores the server processes kept busy on average: about 1 per process when CPU-bound, less when waiting. */
  serverCores?: number;
}

/** Linux reports process times in clock ticks of 1/100 s (USER_HZ) on every mainstream architecture. */
const TICKS_PER_SECOND = 100;

/** User + system CPU seconds of processes so far, from /proc/<pid>/stat. */
async function cpuSeconds(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS_PER_SECOND;
}

/** `run`, with the CPU time the server processes `pids` spent during it. */
export async function withServerCpu(pids: number[], run: () => Promise<Measurement>): Promise<Measurement> {
  if (pids.length === 0) return run();
  const before = await cpuSeconds(pids);
  const measurement = await run();
  const used = (await cpuSeconds(pids)) - before;
  return {
    ...measurement,
    serverCpuMs: measurement.ok ? (used * 1000) / measurement.ok : undefined,
    serverCores: used / measurement.durationS,
  };
}

export interface HttpLoad {
  /** One base URL per server process; connections are split between them. */
  urls: string[];
  connections: number;
  durationS: number;
  requests: autocannon.Request[];
}

function fromAutocannon(result: autocannon.Result): Measurement {
  const statusCodes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stats.count ?? 0;
  const dropped = result.errors + result.timeouts;
  if (dropped) statusCodes.error = dropped;
  const ok = result['2xx'];
  return {
    ok,
    failed: result.non2xx + dropped,
    durationS: result.duration,
    rps: ok / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    statusCodes,
  };
}

/** autocannon for `durationS` seconds; its own output stays off (the run prints one table). */
export async function httpLoad(load: HttpLoad): Promise<Measurement> {
  const [first] = load.urls;
  if (!first) throw new Error('no server to load');
  // autocannon accepts several URLs and splits the connections between them (its README: "More than one
  // URL is allowed"); its type declarations only know a single string.
  const url = load.urls.length === 1 ? first : (load.urls as unknown as string);
  const result = await autocannon({
    url,
    connections: load.connections,
    duration: load.durationS,
    requests: load.requests,
    timeout: 30,
  });
  return fromAutocannon(result);
}

/** A short unmeasured run first (JIT, pools, caches), then the measured one, with the CPU the server `pids` used. */
export async function warmThenMeasure(load: HttpLoad, warmupS: number, pids: number[] = []): Promise<Measurement> {
  if (warmupS > 0) await httpLoad({ ...load, durationS: warmupS });
  return withServerCpu(pids, () => httpLoad(load));
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? 0;
}

export interface LoopLoad {
  concurrency: number;
  durationS: number;
  /** One flow (a whole sign-in, say); a throw counts as a failure. */
  task(worker: number): Promise<void>;
}

/**
 * `concurrency` virtual users, each running `task` back to back until the
 * time is up; flows still running then finish and count. Bounded: it stops by itself.
 */
export async function loop(load: LoopLoad): Promise<Measurement> {
  const latencies: number[] = [];
  let failed = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const deadline = started + load.durationS * 1000;
  const user = async (worker: number) => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await load.task(worker);
        latencies.push(performance.now() - t0);
      } catch (error) {
        failed += 1;
        firstError ??= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: load.concurrency }, (_, worker) => user(worker)));
  const durationS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    ok: latencies.length,
    failed,
    durationS,
    rps: latencies.length / durationS,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    statusCodes: {},
    firstError,
  };
}
