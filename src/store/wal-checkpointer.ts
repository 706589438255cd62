import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SqliteDatabase from 'better-sqlite3';

/** How often the background connection copies the WAL back into the database file. */
const EVERY_MS = 500;

// A plain script (eval workers are CommonJS): its own connection, PASSIVE
// checkpoints only, so it never waits on or blocks the daemon's writer.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 5000');
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); }
  catch (e) { clearInterval(timer); db.close(); parentPort.postMessage(String(e && e.message || e)); }
}, workerData.everyMs);
parentPort.on('message', () => { clearInterval(timer); db.close(); parentPort.close(); });
`;

/**
 * Moves SQLite's WAL checkpoints off the event loop. With the default
 * automatic checkpoint, the commit that crosses 1,000 WAL pages copies them
 * into the database file and fsyncs it inside the request that happened to
 * commit, and the audit append's extra pages made that happen more often:
 * throughput fell 11% with no more CPU per request (BENCHMARKS.md, audit).
 * Here a worker thread with its own connection checkpoints every 500 ms.
 * Fail safe: if the worker stops for any reason the connection's automatic
 * checkpoint comes back, so the WAL never grows without bound.
 */
export function checkpointInBackground(
  raw: SqliteDatabase.Database,
  file: string,
): { stop: () => Promise<void>; worker: Worker } {
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: { file, module: createRequire(import.meta.url).resolve('better-sqlite3'), everyMs: EVERY_MS },
  });
  worker.unref(); // a short-lived CLI that opens the store must still exit
  let running = true;
  const fallBack = () => {
    if (!running) return;
    running = false;
    if (raw.open) raw.pragma('wal_autocheckpoint = 1000');
  };
  worker.on('message', fallBack);
  worker.on('error', fallBack);
  worker.on('exit', fallBack);
  raw.pragma('wal_autocheckpoint = 0');
  const stop = async () => {
    running = false;
    worker.postMessage('stop');
    await new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      setTimeout(() => void worker.terminate().then(() => resolve()), 2_000).unref();
    });
  };
  return { stop, worker };
}
