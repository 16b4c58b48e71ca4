import { describe, expect, it } from 'vitest';
import { parseNcrontab, resolveAppSettings } from '../src/ncrontab';

const next = (expression: string, after: string): string =>
  parseNcrontab(expression).next(new Date(after)).toISOString();

describe('NCRONTAB schedules', () => {
  it('finds the next occurrence for the documented examples (UTC, seconds first)', () => {
    expect(next('0 */5 * * * *', '2030-01-01T10:02:30Z')).toBe('2030-01-01T10:05:00.000Z');
    expect(next('0 0 * * * *', '2030-01-01T10:00:00Z')).toBe('2030-01-01T11:00:00.000Z'); // strictly after
    expect(next('0 30 9 * * 1-5', '2030-01-04T10:00:00Z')).toBe('2030-01-07T09:30:00.000Z'); // Fri → Mon
    expect(next('0 0 3 1 * *', '2030-01-15T00:00:00Z')).toBe('2030-02-01T03:00:00.000Z');
    expect(next('5,10 * * * * *', '2030-01-01T00:00:07.500Z')).toBe('2030-01-01T00:00:10.000Z');
    expect(next('0 0 12 * jan,jul sun', '2030-02-01T00:00:00Z')).toBe('2030-07-07T12:00:00.000Z');
    expect(next('0 15/20 * * * *', '2030-01-01T00:36:00Z')).toBe('2030-01-01T00:55:00.000Z');
  });

  it('requires the day of month and the day of week to match together, as NCrontab does', () => {
    // 13th that is a Friday: after January 2030 the next is September 2030.
    expect(next('0 0 0 13 * 5', '2030-01-01T00:00:00Z')).toBe('2030-09-13T00:00:00.000Z');
  });

  it('reads a 5-field expression as firing at second 0', () => {
    expect(next('*/10 * * * *', '2030-01-01T00:01:00Z')).toBe('2030-01-01T00:10:00.000Z');
  });

  it('rejects malformed expressions, naming the field', () => {
    expect(() => parseNcrontab('0 * * *')).toThrow('expected 6 fields');
    expect(() => parseNcrontab('0 61 * * * *')).toThrow('minute field "61" has 61, outside 0-59');
    expect(() => parseNcrontab('0 * * * foo *')).toThrow('month field "foo" has "foo", which is not a number');
    expect(() => parseNcrontab('*/0 * * * * *')).toThrow('second field "*/0" has step "0"');
    expect(() => parseNcrontab('0 0 5-1 * * *')).toThrow('hour field "5-1" has the range 5-1, which runs backwards');
    expect(() => parseNcrontab('0 0 0 31 2 *').next(new Date('2030-01-01T00:00:00Z'))).toThrow('never fires');
  });
});

describe('app setting references', () => {
  it('resolves %NAME% from the settings and names a missing one', () => {
    expect(resolveAppSettings('%ROTATION_SCHEDULE%', { ROTATION_SCHEDULE: '0 0 2 * * *' }, 'x')).toBe('0 0 2 * * *');
    expect(() => resolveAppSettings('%MISSING%', {}, 'Function "t" schedule')).toThrow(
      `Function "t" schedule: '%MISSING%' does not resolve to a value (no app setting "MISSING").`,
    );
  });
});
