import * as oidc from 'openid-client';
import { Browser, type CookieJar } from './oidc.js';
import { type ProcessResult, runCli } from './processes.js';

/**
 * Several `idp` processes behind one public URL, as behind a load balancer:
 * every node has PUBLIC_URL set to the same origin (the issuer), and a test
 * decides which node each request reaches by rewriting that origin to the
 * node's own. What the test sends is otherwise exactly what a browser or a
 * relying party sends to the public URL (Origin header included), so the
 * nodes cannot tell they are being addressed directly.
 */

/** Picks the node (its origin, `http://127.0.0.1:port`) for the next request. */
export type Route = () => string;

/** Round robin over `nodes`: consecutive requests land on different nodes, as with a load balancer without stickiness. */
export function roundRobin(...nodes: string[]): Route {
  let next = 0;
  return () => {
    const node = nodes[next % nodes.length];
    next += 1;
    if (!node) throw new Error('roundRobin needs at least one node');
    return node;
  };
}

/** `url` with `publicOrigin` replaced by the origin `route` picks; other origins unchanged. */
export function routed(url: URL | string, publicOrigin: string, route: Route): URL {
  const target = new URL(url);
  if (target.origin !== publicOrigin) return target;
  const node = new URL(route());
  target.protocol = node.protocol;
  target.host = node.host;
  return target;
}

/**
 * The cookie-keeping browser of oidc.ts with a load balancer in front: its
 * origin is the public one (redirects and the Origin header say so), its
 * requests go where `route` says. The route can be changed between requests.
 */
export class RoutedBrowser extends Browser {
  constructor(
    publicOrigin: string,
    public route: Route,
    jar?: CookieJar,
  ) {
    super(publicOrigin, jar);
  }

  override request(url: URL, init: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
    return super.request(routed(url, this.origin, this.route), init);
  }
}

export interface ClientCredentials {
  clientId: string;
  clientSecret?: string;
}

/**
 * openid-client's Configuration for `client` at `issuer`, discovered and then
 * used through the node `route` picks for each request. Plain http is allowed:
 * the nodes run without TLS on loopback.
 */
export async function rpVia(
  issuer: string,
  client: ClientCredentials,
  route: Route,
  metadata: Partial<oidc.ClientMetadata> = {},
): Promise<oidc.Configuration> {
  const publicOrigin = new URL(issuer).origin;
  const viaRoute: oidc.CustomFetch = (url, { body, ...options }) =>
    // A copied byte body is ArrayBuffer-backed, as fetch's BodyInit requires; openid-client sends forms as URLSearchParams anyway.
    fetch(routed(url, publicOrigin, route), { ...options, body: body instanceof Uint8Array ? new Uint8Array(body) : body });
  const auth = client.clientSecret ? oidc.ClientSecretBasic(client.clientSecret) : oidc.None();
  return oidc.discovery(new URL(issuer), client.clientId, metadata, auth, {
    execute: [oidc.allowInsecureRequests],
    [oidc.customFetch]: viaRoute,
  });
}

/** Runs `idp <args> --json` with `env` and returns its JSON, or throws with its output. */
export async function cliJson<T = Record<string, unknown>>(args: string[], env: Record<string, string | undefined>): Promise<T> {
  const result: ProcessResult = await runCli([...args, '--json'], env);
  if (result.code !== 0) throw new Error(`idp ${args.join(' ')} exited with ${result.code}\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}
