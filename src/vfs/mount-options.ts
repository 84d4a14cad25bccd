/**
 * Mount option strings (mount -o, mount(2)'s data for tmpfs): a leaf module with no kernel
 * imports, so the command line can check `run --tmpfs` specs without loading the kernel.
 */
import { MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME, MS_STRICTATIME } from '../abi/linux.js';

/**
 * tmpfs options (mm/shmem.c shmem_parse_one): size=N[kmg%] (bytes; a % of `totalBytes`),
 * mode=OCTAL, uid=N, gid=N, nr_inodes (accepted, not enforced); ro/rw/nosuid/nodev/noexec/
 * relatime/noatime… as mount flags. Returns the parsed values or a one-line error.
 */
export interface TmpfsOptions { sizeLimit?: number; mode?: number; uid?: number; gid?: number; flags: number; text: string }
export function parseTmpfsOptions(s: string, totalBytes: number): TmpfsOptions | string {
  const out: TmpfsOptions = { flags: 0, text: '' };
  const shown: string[] = [];
  for (const opt of s.split(',')) {
    if (opt === '') continue;
    const eq = opt.indexOf('=');
    const name = eq < 0 ? opt : opt.slice(0, eq), value = eq < 0 ? '' : opt.slice(eq + 1);
    const flag = FLAG_OPTIONS[name];
    if (flag !== undefined && eq < 0) { if (flag < 0) out.flags &= ~-flag; else out.flags |= flag; continue; }
    switch (name) {
      case 'size': {
        const m = /^(\d+)([kKmMgGtT%]?)$/.exec(value);
        if (!m) return `bad tmpfs size '${value}' (a number of bytes with k, m, g or t, or a percentage)`;
        const n = Number(m[1]);
        const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
        const bytes = m[2] === '%' ? Math.floor(totalBytes * n / 100) : n * mult[m[2].toLowerCase()];
        out.sizeLimit = Math.ceil(bytes / 4096) * 4096;
        if (out.sizeLimit > 0) shown.push(`size=${out.sizeLimit / 1024}k`);
        else out.sizeLimit = undefined; // size=0: no limit, as tmpfs
        break;
      }
      case 'mode': {
        if (!/^[0-7]{1,4}$/.test(value)) return `bad tmpfs mode '${value}' (octal, e.g. 1777)`;
        out.mode = parseInt(value, 8);
        if (out.mode !== 0o1777) shown.push(`mode=${out.mode.toString(8).padStart(3, '0')}`);
        break;
      }
      case 'uid': case 'gid': {
        if (!/^\d+$/.test(value)) return `bad tmpfs ${name} '${value}'`;
        out[name] = Number(value);
        shown.push(`${name}=${value}`);
        break;
      }
      case 'nr_inodes': case 'nr_blocks': case 'huge': case 'mpol': case 'inode32': case 'inode64': break;
      default: return `unknown tmpfs option '${opt}'`;
    }
  }
  out.text = shown.join(',');
  return out;
}

/** Mount options that are flags (negative: the option clears the flag). */
export const FLAG_OPTIONS: Readonly<Record<string, number>> = {
  ro: MS_RDONLY, rw: -MS_RDONLY, nosuid: MS_NOSUID, suid: -MS_NOSUID, nodev: MS_NODEV, dev: -MS_NODEV,
  noexec: MS_NOEXEC, exec: -MS_NOEXEC, noatime: MS_NOATIME, atime: -MS_NOATIME, nodiratime: MS_NODIRATIME, diratime: -MS_NODIRATIME,
  relatime: MS_RELATIME, norelatime: -MS_RELATIME, strictatime: MS_STRICTATIME, defaults: 0,
};

/** Mount flags from option words (ro, nosuid, nodev, noexec, …); unknown words are returned. */
export function flagsOf(options: readonly string[]): { flags: number; rest: string[] } {
  let flags = 0;
  const rest: string[] = [];
  for (const o of options) {
    const f = FLAG_OPTIONS[o];
    if (f === undefined) rest.push(o);
    else if (f < 0) flags &= ~-f;
    else flags |= f;
  }
  return { flags, rest };
}
