/**
 * NUMA memory policy and memory protection keys (man 2 get_mempolicy, set_mempolicy, mbind,
 * pkey_alloc). The sandbox presents one NUMA node (node 0, as /sys/devices/system/node would on a
 * single-node machine) and no protection keys, so these calls answer as Linux does on such a
 * machine: every policy is MPOL_DEFAULT, and pkey_alloc fails as on a CPU without PKU. Compare Linux
 * mm/mempolicy.c (kernel_get_mempolicy, do_get_mempolicy) and mm/mprotect.c (pkey_alloc).
 * Nothing here is state: there is nothing to checkpoint.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { syscall } from './entry.js';

/** MPOL_DEFAULT .. MPOL_WEIGHTED_INTERLEAVE (include/uapi/linux/mempolicy.h). */
const MPOL_DEFAULT = 0, MPOL_WEIGHTED_INTERLEAVE = 6;
const MPOL_F_NODE = 1, MPOL_F_ADDR = 2, MPOL_F_MEMS_ALLOWED = 4;
const MPOL_F_STATIC_NODES = 1 << 15, MPOL_F_RELATIVE_NODES = 1 << 14, MPOL_F_NUMA_BALANCING = 1 << 13;
/** Number of NUMA node ids the sandbox has (nr_node_ids). */
const NR_NODE_IDS = 1;

/**
 * Write a node mask of `maxnode` bits (copy_nodes_to_user: ALIGN(maxnode - 1, 64) / 8 bytes, the
 * part past the kernel's own mask zeroed) with the given nodes set: 0, or -EINVAL when that is more
 * than a page. EFAULT (thrown) on a bad guest pointer.
 */
function writeNodeMask(t: Task, addr: number, maxnode: number, nodes: number[]): number {
  const bytes = Math.ceil((maxnode - 1) / 64) * 8;
  if (bytes <= 0) return 0;
  if (bytes > 4096) return -E.EINVAL;
  const mask = new Uint8Array(bytes);
  for (const n of nodes) if (n < (maxnode - 1)) mask[n >> 3] |= 1 << (n & 7);
  t.mm.write(addr, mask);
  return 0;
}

/**
 * get_mempolicy(int *mode, unsigned long *nodemask, unsigned long maxnode, void *addr, unsigned long flags).
 * Errors: EINVAL (unknown flags, MPOL_F_MEMS_ALLOWED with NODE or ADDR, addr without MPOL_F_ADDR,
 * MPOL_F_NODE alone under a non-interleave policy, maxnode below the node count), EFAULT (addr
 * not mapped, or a bad mode/nodemask pointer).
 */
function getMempolicy(t: Task): number {
  const modeAddr = t.arg(0), maskAddr = t.arg(1), maxnode = t.arg(2), addr = t.arg(3), flags = t.arg(4);
  if (maskAddr && maxnode < NR_NODE_IDS) return -E.EINVAL;
  if (flags & ~(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED)) return -E.EINVAL;
  let mode = MPOL_DEFAULT;
  if (flags & MPOL_F_MEMS_ALLOWED) {
    if (flags & (MPOL_F_NODE | MPOL_F_ADDR)) return -E.EINVAL;
  } else if (flags & MPOL_F_ADDR) {
    if (!t.mm.find(addr)) return -E.EFAULT;
    if (flags & MPOL_F_NODE) mode = 0; // the node holding the page: always node 0
  } else {
    if (addr) return -E.EINVAL;
    if (flags & MPOL_F_NODE) return -E.EINVAL; // only an interleave policy has a "next node"
  }
  if (modeAddr) t.mm.writeU32(modeAddr, mode);
  // MPOL_DEFAULT reports an empty mask; MPOL_F_MEMS_ALLOWED the nodes the task may use.
  return maskAddr ? writeNodeMask(t, maskAddr, maxnode, flags & MPOL_F_MEMS_ALLOWED ? [0] : []) : 0;
}

/**
 * set_mempolicy(int mode, const unsigned long *nodemask, unsigned long maxnode) and the per-range
 * mbind: accepted and not recorded (one node, so every policy places pages the same way), after
 * Linux's argument checks. Errors: EINVAL (unknown mode or mode flags, both STATIC and RELATIVE).
 */
function checkPolicy(modeWithFlags: number): number {
  const flags = modeWithFlags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING);
  const mode = modeWithFlags & ~(MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING);
  if (mode < 0 || mode > MPOL_WEIGHTED_INTERLEAVE) return -E.EINVAL;
  if ((flags & MPOL_F_STATIC_NODES) && (flags & MPOL_F_RELATIVE_NODES)) return -E.EINVAL;
  return 0;
}

export const mempolicySyscalls = [
  syscall('get_mempolicy', 5, getMempolicy, 'partial', 'one NUMA node: the policy is always MPOL_DEFAULT'),
  syscall('set_mempolicy', 3, (t) => checkPolicy(t.argInt(0)), 'stub', 'one NUMA node: accepted, every policy places pages alike'),
  syscall('mbind', 6, (t) => (t.arg(0) & 0xfff ? -E.EINVAL : checkPolicy(t.argInt(2))), 'stub', 'one NUMA node: accepted, every policy places pages alike'),
  syscall('pkey_alloc', 2, () => -E.EINVAL, 'partial', 'no protection keys: EINVAL, as Linux on a CPU without PKU (this host)'),
  syscall('pkey_free', 1, () => -E.EINVAL, 'partial', 'no key was ever allocated'),
];
