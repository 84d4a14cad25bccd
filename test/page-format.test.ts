import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, pageCheck } from '../snapshots/page-format.js';
import { ZERO_PAGE_CHECK } from '../snapshots/page-crunch.js';

describe('page checks', () => {
  it('the CRC-32 of a zero page written out in page-crunch.ts is what pageCheck computes', () => {
    expect(ZERO_PAGE_CHECK).toBe(pageCheck(new Uint8Array(PAGE_SIZE)));
    const page = new Uint8Array(PAGE_SIZE);
    page[100] = 1;
    expect(pageCheck(page)).not.toBe(ZERO_PAGE_CHECK);
  });
});
