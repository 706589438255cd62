import { Type } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';

/** Schemas and helpers the Keystone route modules share (identity.ts, identity-credentials.ts). */
export const PREFIX = '/identity/v3';
export const Name = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f/]+$' });
export const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' });
export const Password = Type.String({ minLength: 8, maxLength: 4096 });
export const Opt = <T extends Parameters<typeof Type.Optional>[0]>(t: T) => Type.Optional(t);
export const NullableString = Type.Union([Type.String({ maxLength: 65535 }), Type.Null()]);
export const DomainRef = Type.Object(
  { id: Opt(Type.String({ maxLength: 64 })), name: Opt(Type.String({ maxLength: 255 })) },
  { additionalProperties: false },
);
export const IdParam = Type.Object({ id: Id });

export const listLinks = (req: FastifyRequest, publicUrl: string) => ({
  self: `${publicUrl}${req.url}`,
  previous: null,
  next: null,
});
