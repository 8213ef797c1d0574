import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Ceiling } from './ceilings/rs256.js';
import type { ScenarioResult } from './lib/context.js';
import type { Measurement } from './lib/load.js';
import { ROOT } from './lib/processes.js';

export interface RunData {
  startedAt: string;
  finishedAt: string;
  machine: { cores: number; cpu: string; memoryGiB: number; node: string; loadAverage: { start: number[]; end: number[] } };
  options: Record<string, unknown>;
  ceilings: { rs256?: Ceiling; argon2?: Ceiling; bareProvider?: Measurement };
  scenarios: ScenarioResult[];
  /** Resident set size of each server process, in MB (10^6 bytes). */
  rss: { idleMB: number[]; endMB: number[] };
}

export type Verdict = 'pass' | 'FAIL' | 'n/a' | 'invalid' | '';

export interface Row {
  scenario: string;
  rps: string;
  p50: string;
  p99: string;
  /** Server CPU per successful request, and the cores it kept busy. */
  cpu: string;
  ceiling: string;
  ratio: string;
  goal: string;
  verdict: Verdict;
}

/** More failed requests than this makes a figure meaningless (rate limited, broken flow …). */
const MAX_FAILURE_RATE = 0.01;

const int = (n: number) => Math.round(n).toLocaleString('en');
const ms = (n: number) => (n < 10 ? n.toFixed(1) : int(n));
const ratioText = (r: number) => `${r.toFixed(2)}×`;

function failureRate(m: Measurement): number {
  return m.failed / Math.max(1, m.ok + m.failed);
}

function failureNote(m: Measurement): string {
  const codes = Object.entries(m.statusCodes)
    .filter(([code]) => !code.startsWith('2'))
    .map(([code, n]) => `${code}×${n}`)
    .join(', ');
  return `${(failureRate(m) * 100).toFixed(1)}% failed${codes ? ` (${codes})` : ''}${m.firstError ? `: ${m.firstError}` : ''}`;
}

function cpuText(m: Measurement): string {
  if (m.serverCpuMs === undefined || m.serverCores === undefined) return '';
  return `${m.serverCpuMs.toFixed(2)} (${m.serverCores.toFixed(1)})`;
}

function measuredRow(title: string, m: Measurement | undefined): Pick<Row, 'scenario' | 'rps' | 'p50' | 'p99' | 'cpu'> {
  if (!m) return { scenario: title, rps: 'n/a', p50: '', p99: '', cpu: '' };
  return { scenario: title, rps: int(m.rps), p50: ms(m.p50), p99: ms(m.p99), cpu: cpuText(m) };
}

/** pass/FAIL of `holds`, unless the measurement is missing or failed too often to mean anything. */
function verdictOf(m: Measurement | undefined, holds: (m: Measurement) => boolean): Verdict {
  if (!m) return 'n/a';
  if (failureRate(m) > MAX_FAILURE_RATE) return 'invalid';
  return holds(m) ? 'pass' : 'FAIL';
}

function find(data: RunData, id: string): ScenarioResult | undefined {
  return data.scenarios.find((s) => s.id === id);
}

function ratioRow(
  title: string,
  m: Measurement | undefined,
  baseline: { label: string; perSecond: number } | undefined,
  goal: { text: string; holds: (ratio: number) => boolean },
): Row {
  const ratio = m && baseline ? m.rps / baseline.perSecond : undefined;
  return {
    ...measuredRow(title, m),
    ceiling: baseline ? `${baseline.label} ${int(baseline.perSecond)}/s` : 'n/a',
    ratio: ratio === undefined ? '' : ratioText(ratio),
    goal: goal.text,
    verdict: ratio === undefined ? 'n/a' : verdictOf(m, () => goal.holds(ratio)),
  };
}

const withinTenPercent = { text: 'change < 10%', holds: (ratio: number) => Math.abs(1 - ratio) < 0.1 };

/** Every goal of issue 8 as a row, then the scenarios without one, then the ceilings themselves. */
export function rowsOf(data: RunData): Row[] {
  const rows: Row[] = [];
  const { rs256, argon2, bareProvider } = data.ceilings;
  const cc = find(data, 'client_credentials')?.measurement;
  const ccSpread = find(data, 'client_credentials_spread');
  const signInSmall = find(data, 'sign_in');
  const signInLarge = find(data, 'sign_in_large');

  if (find(data, 'client_credentials') || rs256) {
    rows.push(
      ratioRow('client_credentials, 1 tenant', cc, rs256 && { label: `RS256 sign ×${rs256.threads} threads`, perSecond: rs256.perSecond }, {
        text: '≥ 0.50× RS256 ceiling',
        holds: (r) => r >= 0.5,
      }),
      ratioRow('client_credentials vs peer', cc, bareProvider && { label: 'bare oidc-provider', perSecond: bareProvider.rps }, {
        text: '≥ 0.80× bare oidc-provider',
        holds: (r) => r >= 0.8,
      }),
    );
  }
  if (ccSpread) {
    rows.push(ratioRow(ccSpread.title, ccSpread.measurement, cc && { label: '1 tenant', perSecond: cc.rps }, withinTenPercent));
  }
  const introspection = find(data, 'introspection');
  if (introspection) {
    const m = introspection.measurement;
    rows.push({
      ...measuredRow(introspection.title, m),
      ceiling: '',
      ratio: '',
      goal: '≥ 5,000/s, p99 < 25 ms',
      verdict: verdictOf(m, (x) => x.rps >= 5000 && x.p99 < 25),
    });
  }
  const refresh = find(data, 'refresh');
  if (refresh) {
    rows.push({
      ...measuredRow(refresh.title, refresh.measurement),
      ceiling: '',
      ratio: '',
      goal: '≥ 800/s',
      verdict: verdictOf(refresh.measurement, (x) => x.rps >= 800),
    });
  }
  if (signInSmall) {
    rows.push(
      ratioRow(
        signInSmall.title,
        signInSmall.measurement,
        argon2 && { label: `Argon2id verify ×${argon2.threads}`, perSecond: argon2.perSecond },
        {
          text: '≥ 0.80× Argon2id ceiling',
          holds: (r) => r >= 0.8,
        },
      ),
    );
  }
  if (signInLarge) {
    const small = signInSmall?.measurement;
    rows.push(
      ratioRow(
        signInLarge.title,
        signInLarge.measurement,
        small && { label: `${signInSmall?.title.split(', ')[1]}`, perSecond: small.rps },
        withinTenPercent,
      ),
    );
  }
  for (const id of ['jwks', 'management_list']) {
    const scenario = find(data, id);
    if (scenario)
      rows.push({ ...measuredRow(scenario.title, scenario.measurement), ceiling: '', ratio: '', goal: 'none (reported)', verdict: '' });
  }
  if (data.rss.idleMB.length) {
    const worst = Math.max(...data.rss.idleMB);
    rows.push({
      scenario: 'idle RSS per server process',
      rps: `${int(worst)} MB`,
      p50: '',
      p99: '',
      cpu: '',
      ceiling: '',
      ratio: '',
      goal: '< 200 MB',
      verdict: worst < 200 ? 'pass' : 'FAIL',
    });
  }
  if (rs256) rows.push(ceilingRow(`ceiling: RS256 signatures, ${rs256.threads} threads`, rs256.perSecond));
  if (argon2) rows.push(ceilingRow(`ceiling: Argon2id verifications, ${argon2.threads} at once`, argon2.perSecond));
  if (bareProvider)
    rows.push({
      ...measuredRow('peer: bare oidc-provider client_credentials', bareProvider),
      ceiling: '',
      ratio: '',
      goal: '',
      verdict: '',
    });
  return rows;
}

function ceilingRow(title: string, perSecond: number): Row {
  return { scenario: title, rps: int(perSecond), p50: '', p99: '', cpu: '', ceiling: '', ratio: '', goal: '', verdict: '' };
}

const HEADER: Row = {
  scenario: 'scenario',
  rps: 'req/s',
  p50: 'p50 ms',
  p99: 'p99 ms',
  cpu: 'CPU ms/req (cores)',
  ceiling: 'ceiling (same run)',
  ratio: 'ratio',
  goal: 'goal',
  verdict: '' as Verdict,
};
const COLUMNS = Object.keys(HEADER) as (keyof Row)[];
const RIGHT_ALIGNED = new Set<keyof Row>(['rps', 'p50', 'p99', 'cpu', 'ratio']);

/** The one table, for the terminal. */
export function textTable(rows: Row[]): string {
  const all = [{ ...HEADER, verdict: 'verdict' as Verdict }, ...rows];
  const widths = COLUMNS.map((c) => Math.max(...all.map((r) => r[c].length)));
  const line = (r: Row) =>
    COLUMNS.map((c, i) => (RIGHT_ALIGNED.has(c) ? r[c].padStart(widths[i] ?? 0) : r[c].padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '─'.repeat(w)).join('  ');
  return [line(all[0] ?? HEADER), rule, ...rows.map(line)].join('\n');
}

function markdownTable(rows: Row[]): string {
  const head = `| ${COLUMNS.map((c) => (c === 'verdict' ? 'verdict' : HEADER[c])).join(' | ')} |`;
  const align = `|${COLUMNS.map((c) => (RIGHT_ALIGNED.has(c) ? '---:' : '---')).join('|')}|`;
  const body = rows.map((r) => `| ${COLUMNS.map((c) => (c === 'verdict' && r.verdict ? `**${r.verdict}**` : r[c])).join(' | ')} |`);
  return [head, align, ...body].join('\n');
}

/** Notes worth reading next to the table: failures, n/a reasons, what a scenario did before measuring. */
export function notesOf(data: RunData): string[] {
  const notes: string[] = [];
  for (const s of data.scenarios) {
    if (s.note) notes.push(`${s.title}: ${s.note}`);
    if (s.measurement?.failed) notes.push(`${s.title}: ${failureNote(s.measurement)}`);
  }
  if (data.ceilings.bareProvider?.failed) notes.push(`bare oidc-provider: ${failureNote(data.ceilings.bareProvider)}`);
  const cc = find(data, 'client_credentials')?.measurement;
  const bare = data.ceilings.bareProvider;
  if (cc?.serverCpuMs && bare?.serverCpuMs) {
    notes.push(
      `client_credentials costs ${cc.serverCpuMs.toFixed(2)} ms of server CPU per token, the bare oidc-provider ${bare.serverCpuMs.toFixed(2)} ms: ` +
        `${(bare.serverCpuMs / cc.serverCpuMs).toFixed(2)}× its throughput if both were CPU-bound (less sensitive to a busy machine than the measured ratio)`,
    );
  }
  if (data.rss.endMB.length) notes.push(`RSS at the end of the run: ${data.rss.endMB.map(int).join(', ')} MB`);
  notes.push(
    'CPU ms/req (cores): CPU time of the server process(es), all threads, per successful request or sign-in, and the cores they kept busy on average (about 1 per process when CPU-bound)',
  );
  return notes;
}

/**
 * Said in so many words when other work competed for the cores: such figures
 * are not the server's. Judged by the load before the run; the load at its end
 * is mostly the benchmark's own.
 */
export function busyWarning(machine: RunData['machine']): string[] {
  const before = machine.loadAverage.start[0] ?? 0;
  // The one-minute average still carries a previous run's load for a while: only more than one per core is other work.
  if (before <= machine.cores) return [];
  return [
    '',
    `**The machine was busy** (load average ${before.toFixed(1)} on ${machine.cores} cores before the run): every figure here is depressed and noisy. The CPU ms/req column and the ratios are the most comparable parts; re-run on a quiet machine for figures to publish.`,
  ];
}

export function markdownSummary(data: RunData, rows: Row[]): string {
  const { machine } = data;
  return [
    `# Benchmark, ${data.startedAt.slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}; load average ${machine.loadAverage.start.map((n) => n.toFixed(1)).join(' ')} at the start, ${machine.loadAverage.end.map((n) => n.toFixed(1)).join(' ')} at the end.`,
    `Options: ${Object.entries(data.options)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(', ')}.`,
    'Loopback HTTP without TLS; the load generator runs on the same cores as the server. How it is measured: [bench/README.md](../README.md).',
    ...busyWarning(machine),
    '',
    markdownTable(rows),
    '',
    ...notesOf(data).map((n) => `- ${n}`),
    '',
  ].join('\n');
}

/** bench/results/<date>.json and .md, and latest.md (what the README links to). */
export async function writeResults(data: RunData, rows: Row[]): Promise<{ json: string; markdown: string }> {
  const dir = path.join(ROOT, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const stamp = data.startedAt.slice(0, 16).replace(':', '-');
  const json = path.join(dir, `${stamp}.json`);
  const markdown = path.join(dir, `${stamp}.md`);
  const summary = markdownSummary(data, rows);
  await writeFile(json, `${JSON.stringify({ ...data, goals: rows }, null, 2)}\n`);
  await writeFile(markdown, summary);
  await writeFile(path.join(dir, 'latest.md'), summary);
  return { json, markdown };
}
