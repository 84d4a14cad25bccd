/**
 * File attributes as the kernel passes them around, and their guest encodings:
 * `struct stat` (x86-64, 144 bytes; man 2 stat) and `struct statx` (256 bytes; man 2 statx).
 */
import { STATX_BASIC_STATS, STATX_SIZE, STAT_SIZE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../abi/linux.js';

/** Attributes of a file. Times are ns since the epoch; sizes in bytes; blocks in 512-byte units. */
export interface Stat {
  dev: number; ino: number; nlink: number; mode: number; uid: number; gid: number; rdev: number;
  size: number; blksize: number; blocks: number;
  atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint;
}

export const dtypeOfMode = (mode: number): number => (mode & S_IFMT) >> 12;
export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;

const NS = 1_000_000_000n;

/** Encode `struct stat` for stat/fstat/lstat/newfstatat (144 bytes). */
export function encodeStat(s: Stat): Uint8Array {
  const b = new Uint8Array(STAT_SIZE);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(s.dev), true);
  v.setBigUint64(8, BigInt(s.ino), true);
  v.setBigUint64(16, BigInt(s.nlink), true);
  v.setUint32(24, s.mode, true);
  v.setUint32(28, s.uid, true);
  v.setUint32(32, s.gid, true);
  v.setBigUint64(40, BigInt(s.rdev), true);
  v.setBigInt64(48, BigInt(s.size), true);
  v.setBigInt64(56, BigInt(s.blksize), true);
  v.setBigInt64(64, BigInt(s.blocks), true);
  const times = [s.atimeNs, s.mtimeNs, s.ctimeNs];
  for (let i = 0; i < 3; i++) {
    v.setBigInt64(72 + i * 16, times[i] / NS, true);
    v.setBigInt64(80 + i * 16, times[i] % NS, true);
  }
  return b;
}

/** Linux's new_encode_dev split: major/minor of a dev_t. */
export const major = (d: number) => Number((BigInt(d) >> 8n) & 0xfffn);
export const minor = (d: number) => Number((BigInt(d) & 0xffn) | ((BigInt(d) >> 12n) & 0xfff00n));

/** Encode `struct statx` (256 bytes) with every basic field present. */
export function encodeStatx(s: Stat): Uint8Array {
  const b = new Uint8Array(STATX_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, STATX_BASIC_STATS, true);
  v.setUint32(4, s.blksize, true);
  v.setUint32(16, s.nlink, true);
  v.setUint32(20, s.uid, true);
  v.setUint32(24, s.gid, true);
  v.setUint16(28, s.mode, true);
  v.setBigUint64(32, BigInt(s.ino), true);
  v.setBigUint64(40, BigInt(s.size), true);
  v.setBigUint64(48, BigInt(s.blocks), true);
  const put = (off: number, ns: bigint) => { v.setBigInt64(off, ns / NS, true); v.setUint32(off + 8, Number(ns % NS), true); };
  put(64, s.atimeNs); put(80, s.ctimeNs); put(96, s.ctimeNs); put(112, s.mtimeNs);
  v.setUint32(128, major(s.rdev), true); v.setUint32(132, minor(s.rdev), true);
  v.setUint32(136, major(s.dev), true); v.setUint32(140, minor(s.dev), true);
  return b;
}
