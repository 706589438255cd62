import { join } from 'node:path';
import { type AuditEvent, systemEvent } from '../audit/writer.js';
import { BulwarkError } from '../errors.js';
import type { AuthContext } from '../policy/context.js';

/**
 * The QEMU guest agent: off unless asked for, and when on, a command filter
 * that lets read-only monitoring through and nothing else, except what an
 * admin has granted for one server until an expiry. Pure: the decision, the
 * QEMU arguments and the filter do no I/O (docs/passthrough-and-agent.md).
 */

export const GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0';
export const GUEST_AGENT_SOCKET = 'qga.sock';
export const FLAVOR_GUEST_AGENT_KEY = 'hw:qemu_guest_agent';
export const IMAGE_GUEST_AGENT_KEY = 'hw_qemu_guest_agent';

export interface GuestAgentDecision {
  enabled: boolean;
  /** Which setting decided: the flavor, the image, or neither (the default). */
  source: 'flavor' | 'image' | 'default';
  reason: string;
}

const flag = (v: unknown): boolean | null => {
  if (typeof v !== 'string') return null;
  const s = v.trim().toLowerCase();
  if (s === 'true' || s === 'yes') return true;
  if (s === 'false' || s === 'no') return false;
  return null;
};

/**
 * Whether a guest gets an agent channel. Off by default; on when the flavor's
 * `hw:qemu_guest_agent=true` or the image's `hw_qemu_guest_agent=yes` asks.
 * The flavor is the operator's: its explicit `false` wins over the image
 * (which any project member can set).
 */
export function guestAgentDecision(
  extraSpecs: Readonly<Record<string, unknown>>,
  imageProps: Readonly<Record<string, unknown>>,
): GuestAgentDecision {
  const f = flag(extraSpecs[FLAVOR_GUEST_AGENT_KEY]);
  if (f === false)
    return { enabled: false, source: 'flavor', reason: `flavor ${FLAVOR_GUEST_AGENT_KEY}=false` };
  if (f === true) return { enabled: true, source: 'flavor', reason: `flavor ${FLAVOR_GUEST_AGENT_KEY}=true` };
  if (flag(imageProps[IMAGE_GUEST_AGENT_KEY]) === true)
    return { enabled: true, source: 'image', reason: `image ${IMAGE_GUEST_AGENT_KEY}=yes` };
  return {
    enabled: false,
    source: 'default',
    reason: 'the guest agent is off unless the flavor or image asks',
  };
}

/**
 * The agent's channel: a virtio-serial port named org.qemu.guest_agent.0 on a
 * unix socket in the guest's 0700 dir, which only the daemon connects to.
 */
export function guestAgentArgs(layout: { dir: string }): string[] {
  if (!layout.dir.startsWith('/')) throw new BulwarkError('BadRequest', 'The guest dir must be absolute.');
  const path = join(layout.dir, GUEST_AGENT_SOCKET);
  if (path.includes('\0')) throw new BulwarkError('BadRequest', 'The guest dir cannot hold NUL characters.');
  return [
    '-chardev',
    `socket,id=qga0,path=${path.replaceAll(',', ',,')},server=on,wait=off`,
    '-device',
    'virtio-serial-pci,id=qga-serial0',
    '-device',
    `virtserialport,bus=qga-serial0.0,chardev=qga0,name=${GUEST_AGENT_CHANNEL}`,
  ];
}

/** Read-only monitoring: allowed on any guest whose agent is on. */
export const MONITORING_COMMANDS: readonly string[] = [
  'guest-sync',
  'guest-sync-delimited',
  'guest-ping',
  'guest-info',
  'guest-get-osinfo',
  'guest-get-host-name',
  'guest-get-time',
  'guest-get-timezone',
  'guest-get-users',
  'guest-get-fsinfo',
  'guest-get-disks',
  'guest-get-diskstats',
  'guest-get-cpustats',
  'guest-get-load',
  'guest-network-get-interfaces',
  'guest-get-vcpus',
  'guest-get-memory-blocks',
  'guest-get-memory-block-info',
  'guest-fsfreeze-status',
];

/** Commands that run code or touch files in the guest: only with an admin's grant for that server. */
export const GRANTABLE_COMMANDS: readonly string[] = [
  'guest-exec',
  'guest-exec-status',
  'guest-file-open',
  'guest-file-read',
  'guest-file-write',
  'guest-file-seek',
  'guest-file-flush',
  'guest-file-close',
];

/** An admin's permission for some grantable commands on one server, until `expiresAt`. */
export interface GuestAgentGrant {
  serverId: string;
  commands: readonly string[];
  /** The admin's user id. */
  grantedBy: string;
  /** ISO 8601. */
  expiresAt: string;
  reason?: string;
}

export type GuestAgentRule =
  | 'monitoring'
  | 'granted'
  | 'needs-grant'
  | 'grant-expired'
  | 'grant-other-server'
  | 'unknown-command'
  | 'malformed';

/** Every filter decision, allowed or not, in a shape ready for the audit log. */
export interface GuestAgentFilterDecision {
  allowed: boolean;
  serverId: string;
  /** The command asked for, or null when the request was too malformed to name one. */
  command: string | null;
  rule: GuestAgentRule;
  reason: string;
  grant: { grantedBy: string; expiresAt: string } | null;
  at: string;
  /** When allowed: the exact bytes to send to the agent (re-serialised from what was checked). */
  forward: string | null;
}

/** Largest request the filter parses (a guest-file-write carries base64 data). */
export const MAX_REQUEST_BYTES = 1024 * 1024;
const COMMAND_NAME = /^guest-[a-z0-9-]{1,64}$/;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

/** Validates a grant as an admin makes it: known grantable commands, a server, an expiry in the future. */
export function validateGrant(grant: GuestAgentGrant, now: Date = new Date()): void {
  if (!grant.serverId) throw new BulwarkError('BadRequest', 'A guest agent grant needs a server id.');
  if (!grant.grantedBy) throw new BulwarkError('BadRequest', 'A guest agent grant needs the granting admin.');
  if (grant.commands.length === 0)
    throw new BulwarkError('BadRequest', 'A guest agent grant needs commands.');
  for (const c of grant.commands)
    if (!GRANTABLE_COMMANDS.includes(c))
      throw new BulwarkError(
        'BadRequest',
        `${JSON.stringify(c)} cannot be granted; grantable commands: ${GRANTABLE_COMMANDS.join(', ')}.`,
      );
  const exp = Date.parse(grant.expiresAt);
  if (Number.isNaN(exp))
    throw new BulwarkError('BadRequest', 'A guest agent grant needs an ISO 8601 expiry.');
  if (exp <= now.getTime())
    throw new BulwarkError('BadRequest', 'A guest agent grant must expire in the future.');
}

/**
 * Decides one agent request for one server. Takes the raw text from the
 * caller (or an already-parsed value) and the grants in force; never throws.
 */
export function filterGuestAgentCommand(input: {
  serverId: string;
  request: unknown;
  grants?: readonly GuestAgentGrant[];
  now?: Date;
}): GuestAgentFilterDecision {
  const now = input.now ?? new Date();
  const base = { serverId: input.serverId, at: now.toISOString(), grant: null, forward: null };
  const refuse = (
    command: string | null,
    rule: GuestAgentRule,
    reason: string,
  ): GuestAgentFilterDecision => ({
    ...base,
    allowed: false,
    command,
    rule,
    reason,
  });

  let req: unknown = input.request;
  if (typeof req === 'string') {
    if (Buffer.byteLength(req) > MAX_REQUEST_BYTES)
      return refuse(null, 'malformed', `The request is larger than ${MAX_REQUEST_BYTES} bytes.`);
    try {
      req = JSON.parse(req);
    } catch {
      return refuse(null, 'malformed', 'The request is not valid JSON.');
    }
  }
  if (!isPlainObject(req)) return refuse(null, 'malformed', 'The request must be a JSON object.');
  const extra = Object.keys(req).filter((k) => k !== 'execute' && k !== 'arguments');
  if (extra.length)
    return refuse(
      null,
      'malformed',
      `The request has unexpected fields: ${extra.join(', ')} (only execute, arguments).`,
    );
  const command = req.execute;
  if (typeof command !== 'string' || !COMMAND_NAME.test(command))
    return refuse(
      null,
      'malformed',
      'The request must name a guest agent command in "execute", e.g. guest-ping.',
    );
  if (req.arguments !== undefined && !isPlainObject(req.arguments))
    return refuse(command, 'malformed', `The arguments of ${command} must be a JSON object.`);

  const forward = JSON.stringify(
    req.arguments === undefined ? { execute: command } : { execute: command, arguments: req.arguments },
  );
  if (MONITORING_COMMANDS.includes(command))
    return {
      ...base,
      allowed: true,
      command,
      rule: 'monitoring',
      reason: `${command} is read-only monitoring`,
      forward,
    };
  if (!GRANTABLE_COMMANDS.includes(command))
    return refuse(
      command,
      'unknown-command',
      `${command} is not allowed through the guest agent filter: only read-only monitoring commands are, ` +
        `and ${GRANTABLE_COMMANDS.join(', ')} with an admin's grant.`,
    );

  const forCommand = (input.grants ?? []).filter((g) => g.commands.includes(command));
  const here = forCommand.filter((g) => g.serverId === input.serverId);
  const live = here.find((g) => {
    const exp = Date.parse(g.expiresAt);
    return !Number.isNaN(exp) && exp > now.getTime();
  });
  if (live)
    return {
      ...base,
      allowed: true,
      command,
      rule: 'granted',
      reason: `${command} granted by ${live.grantedBy} until ${live.expiresAt}`,
      grant: { grantedBy: live.grantedBy, expiresAt: live.expiresAt },
      forward,
    };
  const fix = `an admin must grant ${command} for server ${input.serverId} (with an expiry) first.`;
  if (here.length)
    return refuse(command, 'grant-expired', `The grant for ${command} on this server has expired; ${fix}`);
  if (forCommand.length)
    return refuse(command, 'grant-other-server', `The grant for ${command} is for another server; ${fix}`);
  return refuse(command, 'needs-grant', `${command} runs code or touches files in the guest: ${fix}`);
}

/** Throws the refusal as a BulwarkError (BadRequest for malformed requests, Forbidden otherwise). */
export function assertGuestAgentAllowed(d: GuestAgentFilterDecision): string {
  if (d.allowed && d.forward !== null) return d.forward;
  throw new BulwarkError(d.rule === 'malformed' ? 'BadRequest' : 'Forbidden', d.reason);
}

/** The audit record of a decision, attributed to the caller. */
export function guestAgentAuditEvent(d: GuestAgentFilterDecision, actor?: AuthContext): AuditEvent {
  const grant = d.grant ? ` (grant by ${d.grant.grantedBy}, expires ${d.grant.expiresAt})` : '';
  return systemEvent({
    action: `compute:guest_agent:${d.command ?? 'malformed'}`,
    reason: `${d.rule}: ${d.reason}${grant}`,
    target: { type: 'server', id: d.serverId },
    outcome: d.allowed ? 'success' : 'denied',
    ...(actor ? { actor } : {}),
  });
}
