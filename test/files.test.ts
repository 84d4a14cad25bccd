/**
 * Open files by kind (src/files/): behaviour the file-operations interface fixed, against
 * native runs.
 */
import { describe, expect, it } from 'vitest';
import { native, snapvisor } from './helpers.js';

const REOPEN = String.raw`
import mmap, os
fd = os.open("/etc/passwd", os.O_RDONLY)
os.read(fd, 4)
fd2 = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
print("offsets after reopen", os.lseek(fd, 0, os.SEEK_CUR), os.lseek(fd2, 0, os.SEEK_CUR))
os.read(fd2, 10)
print("first offset after reading the second", os.lseek(fd, 0, os.SEEK_CUR))
os.close(fd2)
print("first still reads", len(os.read(fd, 3)))
r, w = os.pipe()
try:
    mmap.mmap(r, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
except OSError as e:
    print("mmap of a pipe", e.errno)
`;

describe('open files by kind', () => {
  it('a file opened again through /proc/self/fd is a new open file description; mmap of a pipe is ENODEV', async () => {
    const want = await native(['/usr/bin/python3', '-c', REOPEN]);
    expect(want.status).toBe(0);
    const got = await snapvisor(['run', '--', '/usr/bin/python3', '-c', REOPEN], { timeoutMs: 30_000 });
    expect(got.timedOut).toBe(false);
    expect(got.stderr).toBe('');
    expect(got.status).toBe(0);
    expect(got.stdout.toString()).toBe(want.stdout.toString());
    expect(got.stdout.toString()).toContain('offsets after reopen 4 0');
  });
});
