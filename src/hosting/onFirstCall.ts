// Adapters loaded on first use. The build splits the app at each dynamic import(): an adapter and its SDK are a
// chunk of their own, read and evaluated only when that import() runs, while a static import would load them with
// the app. So the composition root reaches each SDK-backed adapter through import() behind one of these, and a cold
// start pays for an SDK only when a function first calls the port that needs it.

type AsyncMethod = (...args: never[]) => Promise<unknown>;
type AsyncMethodName<T> = { [K in keyof T]: T[K] extends AsyncMethod ? K : never }[keyof T];

/**
 * Stands in for the adapter `load` builds, which is loaded when one of `methods` is first called and shared by
 * every call after (a failed load is tried again by the next call). Naming a method the port has and this list
 * lacks fails type-checking where it is used as the port.
 */
export function onFirstCall<T, K extends AsyncMethodName<T>>(
  methods: readonly K[],
  load: () => Promise<T>,
): Pick<T, K> {
  let loaded: Promise<T> | undefined;
  const forward =
    (method: K) =>
    async (...args: unknown[]) => {
      const adapter = await (loaded ??= load().catch((error: unknown) => {
        loaded = undefined;
        throw error;
      }));
      return (adapter[method] as (...args: unknown[]) => Promise<unknown>).apply(adapter, args);
    };
  return Object.fromEntries(methods.map((method) => [method, forward(method)])) as Pick<T, K>;
}
