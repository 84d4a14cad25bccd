/**
 * `snapvisor pool take SOCKET` run by the bin's launcher without the CLI's bundle
 * (cli/pool-client.ts lightPoolTake): which shapes it takes itself. That takes through it get the
 * clone's stdio, status and signals, and load no bundle, is checked in test/pool.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { parseLightPoolTake } from '../cli/pool-client.js';

describe('pool take without the bundle', () => {
  it('takes `[--root DIR] pool take SOCKET` and leaves every other shape to the full CLI', () => {
    expect(parseLightPoolTake(['pool', 'take', '/run/fn.sock'])).toBe('/run/fn.sock');
    expect(parseLightPoolTake(['pool', 'take', 'rel.sock'])).toBe('rel.sock');
    expect(parseLightPoolTake(['--root', '/r', 'pool', 'take', '/s'])).toBe('/s');
    expect(parseLightPoolTake(['--root=/r', 'pool', 'take', '/s'])).toBe('/s');
    for (const args of [
      ['pool', 'take'], // no socket: commander's usage error
      ['pool', 'take', 'a', 'b'],
      ['pool', 'take', '--help'],
      ['pool', 'take', '-h'],
      ['pool', 'take', ''],
      ['pool', 'serve', '/s'],
      ['--log', '/tmp/log', 'pool', 'take', '/s'],
      ['--debug', 'pool', 'take', '/s'],
      ['--root', 'pool', 'take', '/s'],
      ['pool', '--help', 'take', '/s'],
      ['pool', 'take', '--', '/s'],
    ]) expect(parseLightPoolTake(args), JSON.stringify(args)).toBeUndefined();
  });
});
