/**
 * The platforms this build knows, by name, with one line each for `--help`: no implementation is
 * loaded here (the ptrace platform loads koffi), so the command line can list them cheaply.
 * platforms/registry.ts makes them.
 */
export const PLATFORM_DESCRIPTIONS: Readonly<Record<string, string>> = {
  ptrace: 'PTRACE_SYSEMU: each guest thread is a traced stub process (portable baseline)',
};

/** The platform used when none is named. */
export const DEFAULT_PLATFORM = 'ptrace';
