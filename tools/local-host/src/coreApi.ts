// A stand-in for `@azure/functions-core`, the module the Azure Functions Node.js worker provides at run time.
// `@azure/functions` talks to the worker only through it: the app registers its functions and its programming model
// here, and the host invokes functions through that programming model. Types follow
// Azure/azure-functions-nodejs-library `types-core/index.d.ts` (only what the host uses). The host serves what this
// app registers and nothing more: what it does not support (hooks, cookies, other triggers and bindings) fails
// loudly with UnsupportedByLocalHost rather than being half-emulated.
import Module from 'node:module';

export type LogLevel = 'trace' | 'debug' | 'information' | 'warning' | 'error' | 'critical' | 'none';
export type LogCategory = 'user' | 'system' | 'customMetric';

export interface RpcNullableString {
  value?: string | null;
}

/** Something the app asks for that the local host does not do: it stops the host rather than being ignored. */
export class UnsupportedByLocalHost extends Error {
  constructor(what: string) {
    super(`${what} The local host supports only what this app uses; add it there first.`);
    this.name = 'UnsupportedByLocalHost';
  }
}

export interface RpcHttpData {
  method?: string | null;
  url?: string | null;
  headers?: Record<string, string> | null;
  body?: RpcTypedData | null;
  params?: Record<string, string> | null;
  statusCode?: string | null;
  query?: Record<string, string> | null;
  /** Never set by this app; the host refuses a response that sets cookies. */
  cookies?: unknown[] | null;
  nullableHeaders?: Record<string, RpcNullableString> | null;
  nullableParams?: Record<string, RpcNullableString> | null;
  nullableQuery?: Record<string, RpcNullableString> | null;
}

export interface RpcTypedData {
  string?: string | null;
  json?: string | null;
  bytes?: Uint8Array | null;
  http?: RpcHttpData | null;
  int?: number | null;
  double?: number | null;
}

/** One binding as `@azure/functions` registers it: `type`, `direction`, `name` and the trigger's own options. */
export interface BindingInfo {
  type: string;
  direction: 'in' | 'out' | 'inout';
  name?: string;
  [option: string]: unknown;
}

export interface FunctionMetadata {
  name: string;
  functionId?: string;
  bindings: Record<string, BindingInfo>;
  retryOptions?: unknown;
}

export type FunctionCallback = (...args: unknown[]) => unknown;

export interface RpcInvocationRequest {
  invocationId: string;
  functionId: string;
  inputData: { name: string; data: RpcTypedData }[];
  triggerMetadata: Record<string, RpcTypedData>;
}

export interface RpcInvocationResponse {
  invocationId?: string | null;
  outputData?: { name?: string | null; data?: RpcTypedData | null }[] | null;
  returnValue?: RpcTypedData | null;
}

export interface CoreInvocationContext {
  invocationId: string;
  request: RpcInvocationRequest;
  metadata: FunctionMetadata & { rawBindings: string[]; scriptFile: string };
  state?: 'invocation';
  log(level: LogLevel, category: LogCategory, message: string): void;
}

export interface InvocationModel {
  getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
  invokeFunction(context: unknown, inputs: unknown[], callback: FunctionCallback): Promise<unknown>;
  getResponse(context: unknown, result: unknown): Promise<RpcInvocationResponse>;
}

export interface ProgrammingModel {
  name: string;
  version: string;
  getInvocationModel(coreContext: CoreInvocationContext): InvocationModel | Promise<InvocationModel>;
  getCapabilities?(defaults: Record<string, string>): Record<string, string> | Promise<Record<string, string>>;
}

export class Disposable {
  static from(...disposables: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => disposables.forEach((d) => d.dispose()));
  }

  #callOnDispose: (() => unknown) | undefined;

  constructor(callOnDispose: () => unknown) {
    this.#callOnDispose = callOnDispose;
  }

  dispose(): unknown {
    const call = this.#callOnDispose;
    this.#callOnDispose = undefined;
    return call?.();
  }
}

export interface RegisteredCallback {
  metadata: FunctionMetadata;
  callback: FunctionCallback;
}

/** What one app handed to the worker while it loaded. */
export class AppRegistrations {
  readonly functions = new Map<string, RegisteredCallback>();
  programmingModel: ProgrammingModel | undefined;
  startupFinished = false;

  constructor(private readonly systemLog: (level: LogLevel, category: LogCategory, message: string) => void) {}

  /** The object `require('@azure/functions-core')` returns to this app. */
  coreApi(): object {
    return {
      version: '4.0.0-local',
      hostVersion: '4.0.0-local',
      registerFunction: (metadata: FunctionMetadata, callback: FunctionCallback) => this.register(metadata, callback),
      registerHook: (hookName: string) => {
        throw new UnsupportedByLocalHost(
          `The app registers a "${hookName}" hook (app.hook.*); the local host runs none.`,
        );
      },
      setProgrammingModel: (model: ProgrammingModel) => {
        this.programmingModel = model;
      },
      getProgrammingModel: () => this.programmingModel,
      log: (level: LogLevel, category: LogCategory, message: string) => this.systemLog(level, category, message),
      Disposable,
    };
  }

  private register(metadata: FunctionMetadata, callback: FunctionCallback): Disposable {
    if (this.startupFinished) throw new Error('A function can only be registered during app startup.');
    if (!metadata?.name) throw new Error('registerFunction: metadata.name is required.');
    if (this.functions.has(metadata.name)) {
      throw new Error(`Function "${metadata.name}" is registered twice; function names must be unique in an app.`);
    }
    this.functions.set(metadata.name, { metadata, callback });
    return new Disposable(() => {
      if (this.startupFinished) throw new Error('A function can only be disposed during app startup.');
      this.functions.delete(metadata.name);
    });
  }
}

const coreModuleName = '@azure/functions-core';
let coreApiForApps: object | undefined;

type ModuleLoad = (request: string, parent: unknown, isMain: boolean) => unknown;
const moduleInternals = Module as unknown as { _load: ModuleLoad };
let shimInstalled = false;

/**
 * Makes `require('@azure/functions-core')` return `coreApi` from now on, as the worker does for the app it runs.
 * The hook stays for the life of the process; loading another app points it at that app.
 */
export function provideCoreModule(coreApi: object): void {
  coreApiForApps = coreApi;
  if (shimInstalled) return;
  const originalLoad = moduleInternals._load;
  moduleInternals._load = function (this: unknown, request, parent, isMain) {
    if (request === coreModuleName && coreApiForApps) return coreApiForApps;
    return originalLoad.call(this, request, parent, isMain);
  };
  shimInstalled = true;
}
