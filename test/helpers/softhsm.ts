import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** A throwaway SoftHSM2 token in its own directory (SOFTHSM2_CONF points at it); remove() deletes it. */
export interface TestToken {
  dir: string;
  conf: string;
  label: string;
  pinFile: string;
  remove(): void;
}

export async function softhsmToken(): Promise<TestToken> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-softhsm-'));
  mkdirSync(join(dir, 'tokens'), { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
    { mode: 0o600 },
  );
  const label = `bw-${randomBytes(4).toString('hex')}`;
  const pin = randomBytes(8).toString('hex');
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  await run(
    'softhsm2-util',
    ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', randomBytes(8).toString('hex')],
    { env },
  );
  const pinFile = join(dir, 'pin');
  writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  // The module reads SOFTHSM2_CONF when it is initialised, in this process and in children.
  process.env.SOFTHSM2_CONF = conf;
  return { dir, conf, label, pinFile, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
