import type { Measurement } from './load.js';
import type { BenchOptions } from './options.js';
import type { Seeded } from './seed.js';
import type { BenchServer } from './server.js';

/** What every scenario gets: the options, the running server and what was seeded. */
export interface BenchContext {
  options: BenchOptions;
  server: BenchServer;
  seeded: Seeded;
  /** The environment the server runs with (for `idp` CLI calls against the same stores). */
  serverEnv: NodeJS.ProcessEnv;
  /** The bench's own Redis database. */
  redisUrl: string;
}

export interface ScenarioResult {
  id: string;
  title: string;
  /** Absent when the scenario could not run (then `note` says why). */
  measurement?: Measurement;
  connections?: number;
  note?: string;
}

/** HTTP scenarios use 64 connections unless they say otherwise (the introspection goal names 64). */
export const CONNECTIONS = 64;
