import type { CadfEvent } from './cadf.js';
import { CEF_SEVERITY, SYSLOG_SEVERITY } from './security-events.js';

/**
 * Audit events as syslog messages: RFC 5424 with our structured data, CEF
 * over syslog, or one JSON object per message, each framed for TLS
 * transport by octet counting (RFC 5425 §4.3). Pure.
 */
export const SIEM_FORMATS = ['rfc5424', 'cef', 'json'] as const;
export type SiemFormat = (typeof SIEM_FORMATS)[number];

/** RFC 5424 facility 13, "log audit". */
export const AUDIT_FACILITY = 13;
/**
 * SD-ID `name@PEN`; 32473 is the private enterprise number RFC 5612 reserves
 * for documentation, to be replaced by a site's own where it has one.
 */
export const SD_ID = 'bulwark@32473';

export interface SyslogHeader {
  hostname: string;
  appName: string;
  procId: string;
}

/** PRINTUSASCII (%d33-126) only, at most `max` characters, `-` when empty (RFC 5424 §6.2 NILVALUE). */
function headerField(value: string, max: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return clean.length > 0 ? clean : '-';
}

/** SD-PARAM values escape `"`, `\` and `]` (RFC 5424 §6.3.3). */
const sdValue = (v: string) => v.replace(/[\\"\]]/g, (c) => `\\${c}`);

function structuredData(e: CadfEvent): string {
  const params: [string, string | number | null][] = [
    ['seq', e.bulwark.seq],
    ['action', e.bulwark.action],
    ['outcome', e.bulwark.outcome],
    ['severity', e.severity],
    ['category', e.category],
    ['user', e.initiator.name],
    ['userId', e.initiator.id],
    ['project', e.initiator.project_id],
    ['src', e.initiator.host.address],
    ['targetType', e.target.typeURI],
    ['target', e.target.id],
    ['status', e.reason.reasonCode],
    ['requestId', e.bulwark.request_id],
    ['eventId', e.id],
  ];
  const body = params
    .filter(([, v]) => v !== null && v !== '')
    .map(([k, v]) => `${k}="${sdValue(String(v))}"`)
    .join(' ');
  return `[${SD_ID} ${body}]`;
}

function summary(e: CadfEvent): string {
  const who = e.initiator.name ?? e.initiator.id ?? 'anonymous';
  const what = e.target.id ? ` ${e.target.typeURI} ${e.target.id}` : '';
  const why = e.reason.message ? `: ${e.reason.message}` : '';
  return `${e.bulwark.action} ${e.bulwark.outcome} by ${who}${what} (HTTP ${e.reason.reasonCode})${why}`;
}

/** CEF header fields escape `\` and `|`; extension values escape `\`, `=` and line breaks. */
const cefHeader = (v: string) => v.replace(/[\\|]/g, (c) => `\\${c}`);
const cefExt = (v: string) =>
  v.replace(/[\\=]/g, (c) => `\\${c}`).replace(/\r?\n|\r/g, (c) => (c === '\r' ? '\\r' : '\\n'));

function cef(e: CadfEvent): string {
  const ext: [string, string | number | null][] = [
    ['rt', Date.parse(e.eventTime)],
    ['suser', e.initiator.name],
    ['suid', e.initiator.id],
    ['src', e.initiator.host.address],
    ['outcome', e.bulwark.outcome],
    ['request', e.requestPath],
    ['reason', e.reason.message],
    ['cs1Label', 'project'],
    ['cs1', e.initiator.project_id],
    ['cs2Label', 'target'],
    ['cs2', e.target.id ? `${e.target.typeURI}/${e.target.id}` : null],
    ['cn1Label', 'seq'],
    ['cn1', e.bulwark.seq],
    ['cn2Label', 'httpStatus'],
    ['cn2', e.reason.reasonCode],
    ['externalId', e.id],
  ];
  const extension = ext
    .filter(([, v]) => v !== null && v !== '')
    .map(([k, v]) => `${k}=${cefExt(String(v))}`)
    .join(' ');
  const header = ['CEF:0', 'Bulwark', 'Bulwark', '1', e.bulwark.action, e.category, CEF_SEVERITY[e.severity]]
    .map((h, i) => (i === 0 ? String(h) : cefHeader(String(h))))
    .join('|');
  return `${header}|${extension}`;
}

/** One syslog message (RFC 5424 §6), without framing. */
export function formatSyslog(e: CadfEvent, format: SiemFormat, h: SyslogHeader): string {
  const pri = AUDIT_FACILITY * 8 + SYSLOG_SEVERITY[e.severity];
  const head = [
    `<${pri}>1`,
    // RFC 3339 with milliseconds, UTC: what our audit rows hold.
    e.eventTime,
    headerField(h.hostname, 255),
    headerField(h.appName, 48),
    headerField(h.procId, 128),
    headerField(e.category, 32),
  ].join(' ');
  const msg = format === 'json' ? JSON.stringify(e) : format === 'cef' ? cef(e) : summary(e);
  // Line breaks would end the record for receivers that split on them anyway; keep one event one line.
  const oneLine = msg.replace(/\r?\n|\r/g, ' ');
  return `${head} ${format === 'rfc5424' ? structuredData(e) : '-'} ${oneLine}`;
}

/** RFC 5425 §4.3 octet-counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes. */
export function frame(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}
