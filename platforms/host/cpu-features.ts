/**
 * The host CPU's user-visible instruction-set features, as Linux names them in the `flags`
 * line of /proc/cpuinfo (arch/x86/include/asm/cpufeatures.h).
 *
 * A guest process learns what the CPU offers from the `cpuid` instruction (glibc's ifunc
 * resolvers, OpenSSL, numpy, the JVM…) once, at start, and then executes those instructions
 * freely. A checkpoint taken on one host and restored on another therefore carries a promise:
 * every feature the guest may have seen must exist on the new host, or the guest dies of
 * SIGILL at some later, unrelated point (gVisor issue 11486; E2B's restores on older CPUs).
 * snapvisor records the features in the state graph (`config.cpuFeatures`) and a restore
 * refuses a host lacking any of them, naming them.
 *
 * Only flags that let user code execute something are kept: Linux's software and
 * kernel-only flags (`rep_good`, `hypervisor`, `tsc_known_freq`, `pti`, `x2apic`…) differ
 * between otherwise identical hosts and would make every migration fail for nothing.
 */
import fs from 'node:fs';

/**
 * Linux /proc/cpuinfo flag names of x86-64 features that change which instructions (or
 * instruction behaviour) user space may rely on. Sources: cpufeatures.h, the Intel SDM and AMD
 * APM volume 3 (CPUID feature bits), and what glibc's `cpu_features.c` tests.
 */
export const USER_VISIBLE_CPU_FEATURES: ReadonlySet<string> = new Set([
  'fpu', 'cx8', 'cmov', 'clflush', 'mmx', 'fxsr', 'sse', 'sse2', 'lm', 'mmxext', '3dnowprefetch',
  'pni', 'ssse3', 'sse4_1', 'sse4_2', 'sse4a', 'misalignsse', 'popcnt', 'abm', 'cx16', 'lahf_lm', 'movbe',
  'pclmulqdq', 'aes', 'vaes', 'vpclmulqdq', 'gfni', 'sha_ni', 'sha512', 'sm3', 'sm4',
  'rdrand', 'rdseed', 'rdpid', 'rdtscp', 'xsave', 'xsaveopt', 'xsavec', 'xgetbv1',
  'avx', 'avx2', 'fma', 'fma4', 'f16c', 'xop', 'tbm', 'bmi1', 'bmi2', 'adx',
  'erms', 'fsrm', 'fzrm', 'fsrs', 'fsrc', 'clflushopt', 'clwb', 'clzero', 'movdiri', 'movdir64b',
  'serialize', 'waitpkg', 'cldemote', 'fsgsbase', 'pku', 'ospke', 'avx_vnni', 'avx_vnni_int8',
  'avx_vnni_int16', 'avx_ifma', 'avx_ne_convert', 'avx512f', 'avx512dq', 'avx512ifma', 'avx512cd',
  'avx512bw', 'avx512vl', 'avx512vbmi', 'avx512_vbmi2', 'avx512_vnni', 'avx512_bitalg',
  'avx512_vpopcntdq', 'avx512_bf16', 'avx512_fp16', 'avx512_vp2intersect', 'avx512_4vnniw',
  'avx512_4fmaps', 'amx_bf16', 'amx_int8', 'amx_tile', 'amx_fp16', 'amx_complex',
]);

/**
 * Environment variable that replaces the host's feature list (comma-separated flag names).
 * For tests only: it simulates restoring on a host with fewer features than this one.
 */
export const SIMULATED_HOST_CPU_FEATURES_ENV = 'SNAPVISOR_SIMULATE_HOST_CPU_FEATURES';

/** The `flags` of the first processor in a /proc/cpuinfo text (all CPUs of a host agree). */
export function cpuinfoFlags(cpuinfo: string): string[] {
  const line = /^flags\s*:(.*)$/m.exec(cpuinfo);
  return line ? line[1].trim().split(/\s+/).filter(Boolean) : [];
}

/**
 * The host's user-visible CPU features (sorted Linux flag names), or the simulated list of
 * SIMULATED_HOST_CPU_FEATURES_ENV when set. An empty list where /proc/cpuinfo has no flags
 * line (not x86): callers then record and check nothing.
 */
export function hostCpuFeatures(): string[] {
  const simulated = process.env[SIMULATED_HOST_CPU_FEATURES_ENV];
  if (simulated !== undefined) return [...new Set(simulated.split(',').map((s) => s.trim()).filter(Boolean))].sort();
  let text = '';
  try { text = fs.readFileSync('/proc/cpuinfo', 'latin1'); } catch { /* no procfs: nothing known */ }
  return cpuinfoFlags(text).filter((f) => USER_VISIBLE_CPU_FEATURES.has(f)).sort();
}

/**
 * Whether this host can make `cpuid` trap in user space (`arch_prctl(ARCH_SET_CPUID, 0)`,
 * flag `cpuid_fault`): the only way to show a guest fewer features than the host has
 * without hardware virtualization.
 */
export function hostHasCpuidFaulting(): boolean {
  try { return cpuinfoFlags(fs.readFileSync('/proc/cpuinfo', 'latin1')).includes('cpuid_fault'); } catch { return false; }
}

/** Features of `needed` that `host` lacks, in `needed`'s order. */
export function missingCpuFeatures(needed: readonly string[], host: readonly string[]): string[] {
  const have = new Set(host);
  return needed.filter((f) => !have.has(f));
}
