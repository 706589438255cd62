import { StringDecoder } from 'node:string_decoder';

/**
 * asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON
 * header line, then one `[seconds, "o"|"i", data]` line per event. Pure: it
 * turns a session into lines; where they go is the caller's.
 */
export interface CastHeader {
  version: 2;
  width: number;
  height: number;
  /** Unix seconds when the session started. */
  timestamp: number;
  title: string;
  env: { TERM: string; SHELL: string };
}

export function castHeader(opts: { width: number; height: number; startedAt: Date; title: string }): string {
  const h: CastHeader = {
    version: 2,
    width: opts.width,
    height: opts.height,
    timestamp: Math.floor(opts.startedAt.getTime() / 1000),
    title: opts.title,
    env: { TERM: 'xterm-256color', SHELL: '/bin/sh' },
  };
  return `${JSON.stringify(h)}\n`;
}

/**
 * Event lines for one session. Bytes are decoded per direction, so a UTF-8
 * character split across two reads is written whole in the later event.
 */
export class CastEvents {
  private readonly decoders = { o: new StringDecoder('utf8'), i: new StringDecoder('utf8') };

  constructor(private readonly startedAt: number) {}

  line(kind: 'o' | 'i', data: Buffer, now = Date.now()): string | null {
    const text = this.decoders[kind].write(data);
    if (text.length === 0) return null;
    const t = Math.max(0, (now - this.startedAt) / 1000);
    return `${JSON.stringify([Number(t.toFixed(6)), kind, text])}\n`;
  }
}
