/**
 * Why an upstream response (or a federated sign-in) was refused. The reason
 * goes to the audit trail as it is; the person sees one generic sentence, so
 * a prober learns nothing about which check failed.
 */
export const REJECT_REASONS = [
  'unknown_connection',
  'connection_disabled',
  'unknown_state',
  'malformed',
  'message_too_large',
  'doctype',
  'invalid_signature',
  'multiple_assertions',
  'in_response_to',
  'audience',
  'recipient',
  'destination',
  'issuer',
  'not_yet_valid',
  'expired',
  'replayed_assertion',
  'upstream_error',
  'token_exchange_failed',
  'id_token_invalid',
  'missing_subject',
  'missing_email',
  'domain_not_allowed',
  'account_conflict',
  'user_disabled',
  'upstream_unreachable',
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];

export class FederationRejection extends Error {
  constructor(
    readonly reason: RejectReason,
    /** For the audit trail and logs only: never shown to the person signing in. */
    readonly detail?: string,
  ) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'FederationRejection';
  }
}

export const reject = (reason: RejectReason, detail?: string) => new FederationRejection(reason, detail);

/** Audit details are short and single-line whatever an upstream put in its error text. */
export function auditDetail(detail: string | undefined): string | undefined {
  if (!detail) return undefined;
  const line = detail.replace(/[\p{Cc}]+/gu, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
