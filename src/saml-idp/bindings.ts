import type { Context } from 'koa';
import { readForm } from '../interaction/form.js';
import type { Binding } from './constants.js';
import type { RedirectSignature } from './signature.js';
import { decodeBase64, inflate, MAX_MESSAGE_BYTES, refuse } from './xml.js';

/**
 * How a SAML message arrives: HTTP-Redirect (GET, deflated, the signature in
 * the query string) or HTTP-POST (a form field, the signature in the XML).
 */

export type MessageParameter = 'SAMLRequest' | 'SAMLResponse';

export interface IncomingMessage {
  binding: Binding;
  parameter: MessageParameter;
  xml: string;
  relayState?: string;
  /** Redirect binding only, when the SP signed the query. */
  redirectSignature?: RedirectSignature;
}

/** The bindings spec limits RelayState to 80 bytes; SP libraries send longer ones, so the cap is looser but firm. */
const MAX_RELAY_STATE_BYTES = 1024;
/** A deflated, base64'd and URL-encoded message stays far below this. */
const MAX_QUERY_CHARS = 32 * 1024;
/** Form bodies of the POST binding: base64 of an uncompressed message, plus RelayState. */
const MAX_FORM_BYTES = Math.ceil((MAX_MESSAGE_BYTES * 4) / 3) + 4096;

function checkedRelayState(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (Buffer.byteLength(value, 'utf8') > MAX_RELAY_STATE_BYTES) throw refuse('relay_state_too_long', 'RelayState is too long.');
  return value;
}

interface RawParameter {
  raw: string;
  value: string;
}

/** The query's parameters with their raw (still encoded) values, which the Redirect signature covers. */
function rawQueryParameters(querystring: string): Map<string, RawParameter> {
  if (querystring.length > MAX_QUERY_CHARS) throw refuse('message_too_large', 'The SAML message is too large.');
  const parameters = new Map<string, RawParameter>();
  for (const part of querystring.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const raw = eq < 0 ? '' : part.slice(eq + 1);
    const [decoded] = new URLSearchParams(`${rawName}=${raw}`);
    if (!decoded) continue;
    const [name, value] = decoded;
    if (parameters.has(name)) throw refuse('duplicate_parameter', `The query names ${name.slice(0, 40)} more than once.`);
    parameters.set(name, { raw, value });
  }
  return parameters;
}

function redirectSignatureOf(parameters: Map<string, RawParameter>, parameter: MessageParameter): RedirectSignature | undefined {
  const signature = parameters.get('Signature');
  const sigAlg = parameters.get('SigAlg');
  if (!signature && !sigAlg) return undefined;
  if (!signature || !sigAlg) throw refuse('bad_signature', 'A signed SAML message needs both SigAlg and Signature.');
  const message = parameters.get(parameter);
  const relayState = parameters.get('RelayState');
  const signedContent = [
    `${parameter}=${message?.raw ?? ''}`,
    ...(relayState ? [`RelayState=${relayState.raw}`] : []),
    `SigAlg=${sigAlg.raw}`,
  ].join('&');
  return { signedContent, sigAlg: sigAlg.value, signature: decodeBase64(signature.value, 2048) };
}

function readRedirect(ctx: Context, accepted: readonly MessageParameter[]): IncomingMessage {
  const parameters = rawQueryParameters(ctx.querystring);
  const present = accepted.filter((name) => parameters.has(name));
  const [parameter] = present;
  if (!parameter || present.length > 1) throw refuse('missing_message', 'No SAML message was sent.');
  const encoded = parameters.get(parameter)?.value ?? '';
  return {
    binding: 'redirect',
    parameter,
    xml: inflate(decodeBase64(encoded)),
    relayState: checkedRelayState(parameters.get('RelayState')?.value),
    redirectSignature: redirectSignatureOf(parameters, parameter),
  };
}

async function readPost(ctx: Context, accepted: readonly MessageParameter[]): Promise<IncomingMessage> {
  const form = await readForm(ctx, MAX_FORM_BYTES);
  const present = accepted.filter((name) => typeof form[name] === 'string');
  const [parameter] = present;
  if (!parameter || present.length > 1) throw refuse('missing_message', 'No SAML message was sent.');
  return {
    binding: 'post',
    parameter,
    xml: decodeBase64(form[parameter] ?? '').toString('utf8'),
    relayState: checkedRelayState(form.RelayState),
  };
}

/** The message of a GET (Redirect binding) or POST (POST binding) request; anything else is refused. */
export function readIncomingMessage(ctx: Context, accepted: readonly MessageParameter[]): Promise<IncomingMessage> | IncomingMessage {
  if (ctx.method === 'GET') return readRedirect(ctx, accepted);
  if (ctx.method === 'POST') return readPost(ctx, accepted);
  throw refuse('method_not_allowed', 'SAML messages are sent with GET or POST.');
}
