export { checkEncryptionSpec, type EncryptionType, type VolumeType, VolumeTypeService } from './types.js';
export {
  type Attachment,
  type CreateVolumeInput,
  MAX_VOLUME_GIB,
  type Volume,
  VolumeService,
} from './volumes.js';
