/**
 * Platforms by name (`snapvisor run --platform NAME`). A new platform is a folder under
 * platforms/ implementing `Platform` (platforms/platform.ts) plus one line here.
 */
import type { Platform } from './platform.js';
import { PtracePlatform } from './ptrace/ptrace-platform.js';
import { DEFAULT_PLATFORM, PLATFORM_DESCRIPTIONS } from './catalog.js';

export { DEFAULT_PLATFORM };

export interface PlatformEntry {
  /** One line for `--help`. */
  description: string;
  /** Make the platform (may set process-wide state, e.g. the ptrace platform pins the tracer to one CPU). */
  create(): Platform;
}

/** Every platform this build knows, by name. */
export const PLATFORMS: Readonly<Record<string, PlatformEntry>> = {
  ptrace: { description: PLATFORM_DESCRIPTIONS.ptrace, create: () => new PtracePlatform() },
};


/** Thrown for a platform name this build does not know; the message is one line listing the known ones. */
export class UnknownPlatformError extends Error {}

/** Make platform `name` (default: DEFAULT_PLATFORM). Throws UnknownPlatformError. */
export function createPlatform(name: string = DEFAULT_PLATFORM): Platform {
  const entry = Object.hasOwn(PLATFORMS, name) ? PLATFORMS[name] : undefined;
  if (!entry) throw new UnknownPlatformError(`unknown platform "${name}" (known: ${Object.keys(PLATFORMS).join(', ')})`);
  return entry.create();
}
