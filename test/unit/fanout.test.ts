// How a fan-out orders and slices its work: subscriptions take turns, so each one's ARM write budget is in use from
// the start; batches never exceed what one request may carry.
import { describe, expect, it } from 'vitest';
import { chunks, interleaveBy } from '../../src/domain/concurrency';
import { subscriptionOf } from '../../src/domain/hubs';

const hub = (sub: string, name: string) =>
  `/subscriptions/${sub}/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/${name}`;

describe('fan-out order', () => {
  it('lets subscriptions take turns, keeping each one’s own order', () => {
    const tasks = [hub('a', '1'), hub('a', '2'), hub('a', '3'), hub('B', '1'), hub('c', '1'), hub('b', '2')];
    expect(interleaveBy(tasks, subscriptionOf)).toEqual([
      hub('a', '1'),
      hub('B', '1'),
      hub('c', '1'),
      hub('a', '2'),
      hub('b', '2'),
      hub('a', '3'),
    ]);
  });

  it('reads the subscription of a resource id, in lower case; none for other text', () => {
    expect(subscriptionOf(hub('ABC-1', 'h'))).toBe('abc-1');
    expect(subscriptionOf('/SUBSCRIPTIONS/x/resourceGroups/rg')).toBe('x');
    expect(subscriptionOf('not-an-id')).toBe('');
  });

  it('slices work into batches of at most the given size', () => {
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunks([], 100)).toEqual([]);
  });
});
