/** Host networking: routed taps and the nftables security-group dataplane (docs/network.md). */
export { HostCommandError, type NetnsOption } from './exec.js';
export {
  addGatewayAddresses,
  assertIfname,
  createTap,
  deleteLink,
  GATEWAY_DEVICE,
  IPV6_LINK_GATEWAY,
  linkExists,
  listLinks,
  type PlugOptions,
  plugPort,
  prepareRouter,
  setGateways,
  type TapOptions,
  unplugPort,
} from './links.js';
export {
  applyCommands,
  applyRuleset,
  type CounterReading,
  deleteTables,
  listTables,
  type NftOptions,
  readCounters,
  readSet,
} from './nft.js';
export { NftDataplane, type NftDataplaneOptions } from './nft-dataplane.js';
