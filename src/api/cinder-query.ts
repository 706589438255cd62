import { Type } from '@fastify/type-provider-typebox';

const Opt = Type.Optional;

/** A Cinder list's query: filters and the paging/sorting options the CLI sends (accepted, list order is ours). */
export const cinderListQuery = <P extends Parameters<typeof Type.Object>[0]>(filters: P) =>
  Type.Object({
    name: Opt(Type.String()),
    status: Opt(Type.String()),
    all_tenants: Opt(Type.String()),
    limit: Opt(Type.Integer({ minimum: 0 })),
    marker: Opt(Type.String()),
    sort: Opt(Type.String()),
    sort_key: Opt(Type.String()),
    sort_dir: Opt(Type.String()),
    offset: Opt(Type.Integer({ minimum: 0 })),
    ...filters,
  });
