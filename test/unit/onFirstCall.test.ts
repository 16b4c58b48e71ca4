// The composition root's stand-in for an adapter loaded on first use.
import { describe, expect, it, vi } from 'vitest';
import { onFirstCall } from '../../src/hosting/onFirstCall';

class Greeter {
  constructor(private readonly name: string) {}
  greet(greeting: string): Promise<string> {
    return Promise.resolve(`${greeting}, ${this.name}`);
  }
  leave(): Promise<string> {
    return Promise.resolve(`bye, ${this.name}`);
  }
}

describe('onFirstCall', () => {
  it('loads nothing until a method is called, then loads once for every call, the concurrent ones included', async () => {
    const load = vi.fn(() => Promise.resolve(new Greeter('vault')));
    const greeter = onFirstCall(['greet', 'leave'], load);
    expect(load).not.toHaveBeenCalled();
    expect(await Promise.all([greeter.greet('hello'), greeter.leave(), greeter.greet('hi')])).toEqual([
      'hello, vault',
      'bye, vault',
      'hi, vault',
    ]);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('tries a failed load again on the next call', async () => {
    const load = vi
      .fn<() => Promise<Greeter>>()
      .mockRejectedValueOnce(new Error('module failed'))
      .mockResolvedValue(new Greeter('vault'));
    const greeter = onFirstCall(['greet'], load);
    await expect(greeter.greet('hello')).rejects.toThrow('module failed');
    expect(await greeter.greet('hello')).toBe('hello, vault');
    expect(load).toHaveBeenCalledTimes(2);
  });
});
