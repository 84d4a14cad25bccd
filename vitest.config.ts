import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'property-tests/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Guests are real processes under ptrace: keep files in separate workers, but few at once (2 cores).
    fileParallelism: true,
    maxWorkers: 2,
  },
});
