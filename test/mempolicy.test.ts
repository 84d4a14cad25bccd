/**
 * NUMA memory policy and protection-key calls answer as Linux on this one-node, no-PKU host
 * (src/syscalls/mempolicy.ts): the same results and errnos as the program run natively.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, expectSandboxOutput, native } from './helpers.js';

const SOURCE = String.raw`
#include <stdio.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#define SHOW(what, call) do { long r = (call); printf("%s %ld %d\n", what, r, r < 0 ? errno : 0); } while (0)
int main(void) {
  int mode = -1; unsigned long mask[2] = { ~0UL, ~0UL };
  SHOW("get", syscall(SYS_get_mempolicy, &mode, mask, 128, 0, 0)); printf("mode %d mask %lx %lx\n", mode, mask[0], mask[1]);
  SHOW("allowed", syscall(SYS_get_mempolicy, &mode, mask, 128, 0, 4)); printf("mode %d mask %lx\n", mode, mask[0]);
  SHOW("node without addr", syscall(SYS_get_mempolicy, &mode, 0, 0, 0, 1));
  SHOW("node of addr", syscall(SYS_get_mempolicy, &mode, 0, 0, (void *)&mode, 3)); printf("node %d\n", mode);
  SHOW("unmapped addr", syscall(SYS_get_mempolicy, &mode, 0, 0, (void *)8, 2));
  SHOW("addr without flag", syscall(SYS_get_mempolicy, &mode, 0, 0, (void *)&mode, 0));
  SHOW("bad flags", syscall(SYS_get_mempolicy, &mode, 0, 0, 0, 64));
  SHOW("bad mode pointer", syscall(SYS_get_mempolicy, (void *)8, 0, 0, 0, 0));
  SHOW("mask past a page", syscall(SYS_get_mempolicy, &mode, mask, 1UL << 40, 0, 0));
  SHOW("set default", syscall(SYS_set_mempolicy, 0, 0, 0));
  SHOW("set bad mode", syscall(SYS_set_mempolicy, 9, 0, 0));
  SHOW("pkey_alloc", syscall(SYS_pkey_alloc, 0, 0));
  SHOW("pkey_free", syscall(SYS_pkey_free, 1));
  return 0;
}`;

describe('get_mempolicy, set_mempolicy, pkey_alloc', () => {
  it('answer as natively', async () => {
    const exe = compileStatic('mempolicy', SOURCE);
    const want = await native([exe]);
    await expectSandboxOutput([exe], want.stdout.toString(), 20_000);
  });
});
