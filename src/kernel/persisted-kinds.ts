/**
 * Every kind of object in the state graph, in the order a restore brings them back
 * (declarations live beside each object's code; see ./persist.ts). A new kind of kernel
 * object adds its declaration here, and test/persist.test.ts round-trips it.
 */
import type { SandboxConfig } from './state.js';
import { byId, persisted, type PersistedKind } from './persist.js';
import { clockPersist } from './clock.js';
import { memoryFilePersist } from '../mm/memory-file.js';
import { inodePersist, upperPathsPersist } from '../vfs/vfs.js';
import { mountPersist, superblockPersist } from '../vfs/mounts.js';
import { filePersists } from '../files/registry.js';
import { pipePersist } from '../ipc/pipe.js';
import { ptyPersist } from '../ipc/pty.js';
import { netPersist } from '../net/socket.js';
import { addressSpacePersist } from '../mm/address-space.js';
import { fdTablePersist, taskPersist, threadGroupPersist } from './task.js';

/** The sandbox's configuration (rootfs, hostname, the terminal's foreground group): data. */
const configPersist = persisted<SandboxConfig>({
  kind: 'config',
  records: (g) => [['config', g.config]],
  rebuilds: 'nothing: plain data',
});

export const PERSISTED_KINDS: ReadonlyArray<PersistedKind<unknown>> = [
  configPersist, clockPersist, memoryFilePersist, inodePersist, upperPathsPersist, superblockPersist, mountPersist,
  ...filePersists, pipePersist, ptyPersist, netPersist,
  fdTablePersist, threadGroupPersist, addressSpacePersist, taskPersist,
] as ReadonlyArray<PersistedKind<unknown>>;

export { byId };
