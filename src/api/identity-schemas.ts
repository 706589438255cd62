import { Type } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';

/** Schemas and helpers the Keystone route modules share (identity.ts, identity-credentials.ts). */
export const PREFIX = '/identity/v3';
export const Name = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f/]+$' });
export const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
export const Password = Type.String({ minLength: 8, maxLength: 4096 });
export const Opt = <T extends Parameters<typeof Type.Optional>[0]>(t: T) => Type.Optional(t);
export const NullableString = Type.Union([Type.String({ maxLength: 65535 }), Type.Null()]);
/** Text a login looks things up by: no control characters (PostgreSQL cannot even compare a NUL). */
export const RefText = (maxLength: number) => Type.String({ maxLength, pattern: '^[^\\x00-\\x1f]*$' });
export const DomainRef = Type.Object(
  { id: Opt(RefText(64)), name: Opt(RefText(255)) },
  { additionalProperties: false },
);
/** A user named the Keystone way: by id, or by name within a domain. */
export const UserRefFields = { id: Opt(RefText(64)), name: Opt(RefText(255)), domain: Opt(DomainRef) };
export const UserRef = Type.Object(UserRefFields, { additionalProperties: false });
/** A project to scope to: by id, or by name within a domain. */
export const ProjectRef = Type.Object(
  { id: Opt(RefText(64)), name: Opt(RefText(255)), domain: Opt(DomainRef) },
  { additionalProperties: false },
);
export const IdParam = Type.Object({ id: Id });

export const listLinks = (req: FastifyRequest, publicUrl: string) => ({
  self: `${publicUrl}${req.url}`,
  previous: null,
  next: null,
});
