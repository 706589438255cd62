import { badRequest } from '../errors.js';

/**
 * Snapshot names carry their purpose and when they were taken (guide 6:
 * "Name snapshots with timestamp and purpose"): the name a caller gives is the
 * purpose, and the platform records `<purpose>-<UTC timestamp>`, e.g.
 * `pre-upgrade-20261201T074500Z`. A name that already ends in such a stamp is
 * taken as purpose + stamp, so re-submitting a full name does not stamp twice.
 */
const PURPOSE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const STAMP = /-(\d{8}T\d{6}Z)$/;

/** `2026-12-01T07:45:00.123Z` → `20261201T074500Z`. */
export const utcStamp = (at: Date): string =>
  at
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll(/[-:]/g, '');

/** The purpose in a given name (its stamp, if any, dropped); refused unless it is a short slug. */
export function purposeOf(given: string | null | undefined): string {
  const purpose = (given ?? '').trim().replace(STAMP, '');
  if (!PURPOSE.test(purpose))
    throw badRequest(
      'A snapshot needs a name saying its purpose: 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit (e.g. pre-upgrade); the platform appends the UTC time.',
    );
  return purpose;
}

export const snapshotName = (purpose: string, at: Date): string => `${purpose}-${utcStamp(at)}`;

/** The description every snapshot needs (guide 6: "Require description for snapshots"). */
export function requiredDescription(d: string | null | undefined): string {
  const text = (d ?? '').trim();
  if (!text)
    throw badRequest(
      'A snapshot needs a description saying why it is taken (openstack volume snapshot create --description "..."); nothing was created.',
    );
  if (text.length > 255) throw badRequest('A snapshot description is at most 255 characters.');
  return text;
}
