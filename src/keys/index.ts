import type { KekConfig, KekProvider } from './kek.js';
import { FileKek } from './kek-file.js';
import { Pkcs11Kek } from './kek-pkcs11.js';

export type { KeyService } from './contract.js';
export type { KekConfig, KekProvider } from './kek.js';
export { KeyManager } from './manager.js';

/** Opens the configured KEK provider; throws (the daemon refuses to start) when it is unusable. */
export function openKek(config: KekConfig, dataDir: string): KekProvider {
  if (config.kind === 'file') return FileKek.open(dataDir);
  if (!config.pkcs11Module || !config.pkcs11TokenLabel || !config.pkcs11PinFile)
    throw new Error('--kek pkcs11 needs --pkcs11-module, --pkcs11-token-label and --pkcs11-pin-file');
  return Pkcs11Kek.open({
    module: config.pkcs11Module,
    tokenLabel: config.pkcs11TokenLabel,
    pinFile: config.pkcs11PinFile,
    ...(config.pkcs11KeyLabel ? { keyLabel: config.pkcs11KeyLabel } : {}),
  });
}
