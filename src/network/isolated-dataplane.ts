import type { DataplaneSync } from './networks.js';

/**
 * The dataplane until nftables enforcement lands: guest taps are created but
 * attached to nothing (no bridge, no route), so no packet reaches or leaves a
 * guest. That is deny-by-default in its bluntest form, and it fails closed.
 */
export class IsolatedDataplane implements DataplaneSync {
  async sync(): Promise<void> {}
}
