import { expect } from 'vitest';
import { BulwarkError } from '../../src/errors.js';

/** Asserts `fn` throws a BulwarkError of `kind` whose message matches `re`. */
export function refuses(fn: () => unknown, re: RegExp, kind: 'BadRequest' | 'Conflict' = 'BadRequest'): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(BulwarkError);
  expect((caught as BulwarkError).kind).toBe(kind);
  expect((caught as BulwarkError).message).toMatch(re);
}
