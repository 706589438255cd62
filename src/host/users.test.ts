import { describe, expect, it } from 'vitest';
import { vmUserName } from './users.js';

describe('guest user names', () => {
  it('are bwvm- and 12 hex digits of the server id: a valid system user name', () => {
    const name = vmUserName('0b7c1a6e-4d2f-4a8b-9c3d-5e6f7a8b9c0d');
    expect(name).toBe('bwvm-0b7c1a6e4d2f');
    expect(name.length).toBeLessThanOrEqual(32);
    expect(name).toMatch(/^[a-z_][a-z0-9_-]*$/);
  });

  it('refuse anything that is not a server id', () => {
    expect(() => vmUserName('root')).toThrow(/UUID/);
    expect(() => vmUserName('0B7C1A6E-4D2F-4A8B-9C3D-5E6F7A8B9C0D')).toThrow(/UUID/);
  });
});
