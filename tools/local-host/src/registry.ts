// Loads a Node.js v4 programming-model app the way the Azure Functions worker does and invokes its functions
// through the app's own programming model (so handlers get the real `@azure/functions` objects).
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { inspect } from 'node:util';
import type {
  BindingInfo,
  CoreInvocationContext,
  FunctionMetadata,
  LogCategory,
  LogLevel,
  RegisteredCallback,
  RpcInvocationResponse,
  RpcTypedData,
} from './coreApi';
import { AppRegistrations, provideCoreModule, UnsupportedByLocalHost } from './coreApi';
import type { HostLogEntry } from './log';
import { describeError, formatLogLine, isShown } from './log';

/** A function as the app registered it, plus the trigger options the host acts on. */
export interface RegisteredFunction {
  name: string;
  /** e.g. `httpTrigger`, `eventGridTrigger`, `timerTrigger`. */
  triggerType: string;
  /** Exactly as `@azure/functions` registered them, keyed by binding name (`$return` for the return value). */
  bindings: Record<string, BindingInfo>;
  /** HTTP only: the route template under `/api/` (the function name when the app gave none). */
  route?: string;
  /** HTTP only, upper case; absent means every method. */
  methods?: string[];
  /** HTTP only: `anonymous`, `function` or `admin`. */
  authLevel?: string;
  /** Timer only: the NCRONTAB expression as registered (`%SETTING%` not yet resolved). */
  schedule?: string;
  /** Storage queue only: the queue name as registered (`%SETTING%` not yet resolved). */
  queueName?: string;
  /** Storage queue only: the app setting naming the storage account (absent: AzureWebJobsStorage). */
  connection?: string;
}

export interface InvocationInput {
  /** The trigger's value in the worker protocol's typed-data form (`http`, `json`, `string`, ...). */
  trigger: RpcTypedData;
  /** Binding data the trigger extension would attach (e.g. Event Grid's `data`). */
  triggerMetadata?: Record<string, RpcTypedData>;
  /** Why the function runs, for the `Executing ...` log line. */
  reason: string;
  /** A line the trigger logs right after `Executing ...` (the queue trigger's `Trigger Details: ...`). */
  details?: string;
}

export interface LoadedApp {
  appDir: string;
  functions: RegisteredFunction[];
  /** Why the entry point threw while loading, if it did (the functions registered before that still run). */
  loadError?: Error;
  /** Runs one invocation; resolves with the worker's invocation response, rejects with FunctionInvocationError. */
  invoke(functionName: string, input: InvocationInput): Promise<RpcInvocationResponse>;
}

export interface LoadOptions {
  /** Receives every log entry (app and host); default: lines of information level and above on stdout. */
  log?: (entry: HostLogEntry) => void;
}

export class FunctionInvocationError extends Error {
  constructor(
    readonly functionName: string,
    readonly invocationId: string,
    cause: unknown,
  ) {
    super(`Exception while executing function: Functions.${functionName}`, { cause });
    this.name = 'FunctionInvocationError';
  }
}

// Capabilities the Node.js worker announces to the host (azure-functions-nodejs-worker getWorkerCapabilities).
const workerCapabilities = {
  RawHttpBodyBytes: 'true',
  RpcHttpTriggerMetadataRemoved: 'true',
  RpcHttpBodyOnly: 'true',
  IgnoreEmptyValuedRpcHttpHeaders: 'true',
  UseNullableValueDictionaryForHttp: 'true',
  WorkerStatus: 'true',
  TypedDataCollection: 'true',
  HandlesWorkerTerminateMessage: 'true',
};

const isTriggerType = (type: string): boolean => /trigger$/i.test(type);

/** The triggers this app registers, which the host serves; any other fails the load. */
const SUPPORTED_TRIGGERS = ['httptrigger', 'eventgridtrigger', 'timertrigger', 'queuetrigger'];

function printToStdout(entry: HostLogEntry): void {
  if (isShown(entry.level)) process.stdout.write(`${formatLogLine(entry)}\n`);
}

export async function loadFunctionApp(appDir: string, options: LoadOptions = {}): Promise<LoadedApp> {
  const log = options.log ?? printToStdout;
  const functionAppDirectory = path.resolve(appDir);
  const entryPoint = resolveEntryPoint(functionAppDirectory);

  const emit = (entry: Omit<HostLogEntry, 'time'>): void => log({ time: new Date(), ...entry });
  const registrations: AppRegistrations = new AppRegistrations((level, category, message) =>
    emit({ level, category, message }),
  );

  provideCoreModule(registrations.coreApi());
  // When the entry point throws (typically configuration validated at module load), the Node.js worker logs
  // `Worker was unable to load entry point "<main>": <message>` and carries on: the host indexes whatever was
  // registered before the throw (usually nothing) and keeps running, answering 404 on every route. The local host
  // does the same, so that what is tested here is what Azure does, but it says so at error level, because in Azure
  // that single warning is easy to miss and nothing else alerts. What the local host does not support is another
  // matter: it stops the host, as serving the app without it would test something other than what Azure runs.
  let loadError: Error | undefined;
  try {
    loadEntryPoint(entryPoint);
  } catch (error) {
    if (error instanceof UnsupportedByLocalHost) throw error;
    loadError = error instanceof Error ? error : new Error(inspect(error));
    const main = path.relative(functionAppDirectory, entryPoint.file) || entryPoint.file;
    emit({
      level: 'error',
      category: 'system',
      message: `Worker was unable to load entry point "${main}": ${describeError(loadError)}`,
    });
  }

  const programmingModel = registrations.programmingModel;
  if (programmingModel?.getCapabilities) {
    const capabilities = await programmingModel.getCapabilities({ ...workerCapabilities });
    if (capabilities.HttpUri) {
      throw new Error(
        'The app enables HTTP streaming (app.setup({ enableHttpStream: true })); the local host does not support it.',
      );
    }
  }

  registrations.startupFinished = true;

  const registered = [...registrations.functions.values()];
  const functions = registered.map(({ metadata }) => describeFunction(metadata));
  if (loadError) {
    emit({
      level: 'warning',
      category: 'system',
      message:
        functions.length === 0
          ? 'No job functions found: the app registered none before its entry point failed, so every route answers 404.'
          : `Only ${functions.length} function(s) registered before the entry point failed; the others do not exist.`,
    });
  }
  if (registered.length > 0 && !programmingModel) {
    throw new Error('The app registered functions but no programming model; is @azure/functions v4 in use?');
  }

  async function invoke(functionName: string, input: InvocationInput): Promise<RpcInvocationResponse> {
    const registeredFunction = registrations.functions.get(functionName);
    if (!registeredFunction || !programmingModel) throw new Error(`The app has no function named "${functionName}".`);
    const invocationId = randomUUID();
    const hostLog = (level: LogLevel, message: string): void =>
      emit({ level, category: 'system', functionName, invocationId, message });
    const started = Date.now();
    hostLog('information', `Executing 'Functions.${functionName}' (Reason='${input.reason}', Id=${invocationId})`);
    if (input.details) hostLog('information', input.details);
    try {
      const response = await runInvocation(registeredFunction, invocationId, input, (level, category, message) =>
        emit({ level, category, functionName, invocationId, message }),
      );
      hostLog(
        'information',
        `Executed 'Functions.${functionName}' (Succeeded, Id=${invocationId}, Duration=${Date.now() - started}ms)`,
      );
      return response;
    } catch (error) {
      const failure = new FunctionInvocationError(functionName, invocationId, error);
      hostLog('error', `${failure.message}. ${describeError(error)}`);
      hostLog(
        'error',
        `Executed 'Functions.${functionName}' (Failed, Id=${invocationId}, Duration=${Date.now() - started}ms)`,
      );
      throw failure;
    }
  }

  /** The worker's invocation sequence (no hooks: the app registers none): arguments, the call, the response. */
  async function runInvocation(
    { metadata, callback }: RegisteredCallback,
    invocationId: string,
    input: InvocationInput,
    log: (level: LogLevel, category: LogCategory, message: string) => void,
  ): Promise<RpcInvocationResponse> {
    const coreContext: CoreInvocationContext = {
      invocationId,
      request: {
        invocationId,
        functionId: metadata.functionId ?? metadata.name,
        inputData: [{ name: triggerBindingName(metadata), data: input.trigger }],
        triggerMetadata: { ...input.triggerMetadata, sys: systemBindingData(metadata.name) },
      },
      metadata: {
        ...metadata,
        // What the worker sends the host: the host reads `rawBindings`, the library reads `bindings`.
        rawBindings: Object.entries(metadata.bindings).map(([name, binding]) => JSON.stringify({ ...binding, name })),
        scriptFile: 'n/a',
      },
      log,
    };
    const invocationModel = await programmingModel!.getInvocationModel(coreContext);
    const { context, inputs } = await invocationModel.getArguments();
    coreContext.state = 'invocation';
    let result: unknown;
    try {
      result = await invocationModel.invokeFunction(context, inputs, callback);
    } catch (error) {
      throw error instanceof Error ? error : new Error(inspect(error));
    } finally {
      delete coreContext.state;
    }
    return invocationModel.getResponse(context, result);
  }

  return {
    appDir: functionAppDirectory,
    functions,
    ...(loadError ? { loadError } : {}),
    invoke,
  };
}

interface EntryPoint {
  file: string;
  /** package.json `type`. */
  packageType: unknown;
}

function resolveEntryPoint(appDir: string): EntryPoint {
  const packageJsonPath = path.join(appDir, 'package.json');
  if (!existsSync(packageJsonPath)) throw new Error(`No package.json in ${appDir}: it is not a function app folder.`);
  let manifest: { main?: unknown; type?: unknown };
  try {
    manifest = JSON.parse(readFileSync(packageJsonPath, 'utf8')) as typeof manifest;
  } catch (error) {
    throw new Error(`${packageJsonPath} is not valid JSON: ${(error as Error).message}`);
  }
  const { main } = manifest;
  if (typeof main !== 'string' || main.trim() === '') {
    throw new Error(`${packageJsonPath} has no "main": it must name the file that registers the functions.`);
  }
  const file = path.resolve(appDir, main);
  if (!existsSync(file)) {
    throw new Error(`"main" in ${packageJsonPath} is "${main}", but ${file} does not exist (run the build first?).`);
  }
  return { file, packageType: manifest.type };
}

/** As the worker decides: `.mjs`, or `.js` in a package whose type is "module", is an ES module. */
function isEsModule(entryPoint: string, packageType: unknown): boolean {
  return entryPoint.endsWith('.mjs') || (entryPoint.endsWith('.js') && packageType === 'module');
}

// ES modules cannot be unloaded, so an ES-module app is loaded once per process; the worker runs one app per
// process anyway.
const esModulesLoaded = new Set<string>();

function loadEntryPoint({ file, packageType }: EntryPoint): void {
  if (!isEsModule(file, packageType)) return requireFresh(file);
  if (esModulesLoaded.has(file)) {
    throw new Error(`${file} is an ES module and was loaded in this process already; load it in a new process.`);
  }
  esModulesLoaded.add(file);
  // Node.js's own loader, not an import() that a test runner would rewrite: require() takes an ES module (without
  // top-level await) since Node.js 20.19, and the module's own import() calls then load its chunks natively.
  createRequire(file)(file);
}

// Modules loaded by the previous app in this process. A fresh app gets fresh copies (its own `@azure/functions`
// with its own registrations); the worker never needs this because it runs one app per process.
const modulesOfPreviousApp = new Set<string>();

function requireFresh(entryPoint: string): void {
  const appRequire = createRequire(entryPoint);
  for (const id of modulesOfPreviousApp) delete appRequire.cache[id];
  modulesOfPreviousApp.clear();
  const loadedBefore = new Set(Object.keys(appRequire.cache));
  try {
    appRequire(entryPoint);
  } finally {
    for (const id of Object.keys(appRequire.cache)) if (!loadedBefore.has(id)) modulesOfPreviousApp.add(id);
  }
}

function triggerBindingName(metadata: FunctionMetadata): string {
  const entry = Object.entries(metadata.bindings).find(([, binding]) => isTriggerType(binding.type));
  if (!entry) throw new Error(`Function "${metadata.name}" has no trigger binding.`);
  return entry[0];
}

/** The `sys` binding data the host adds to every invocation. */
function systemBindingData(functionName: string): RpcTypedData {
  return {
    json: JSON.stringify({ MethodName: functionName, UtcNow: new Date().toISOString(), RandGuid: randomUUID() }),
  };
}

function describeFunction(metadata: FunctionMetadata): RegisteredFunction {
  const triggerName = triggerBindingName(metadata);
  const trigger = metadata.bindings[triggerName]!;
  if (!SUPPORTED_TRIGGERS.includes(trigger.type.toLowerCase())) {
    throw new UnsupportedByLocalHost(`Function "${metadata.name}" has a ${trigger.type}; the local host has none.`);
  }
  for (const [name, binding] of Object.entries(metadata.bindings)) {
    const httpOut = trigger.type.toLowerCase() === 'httptrigger' && binding.type.toLowerCase() === 'http';
    if (name !== triggerName && !(httpOut && binding.direction === 'out')) {
      throw new UnsupportedByLocalHost(
        `Function "${metadata.name}" has a ${binding.type} ${binding.direction} binding ("${name}"); the local host ` +
          'serves triggers and the HTTP response only.',
      );
    }
  }
  const described: RegisteredFunction = {
    name: metadata.name,
    triggerType: trigger.type,
    bindings: JSON.parse(JSON.stringify(metadata.bindings)) as Record<string, BindingInfo>,
  };
  switch (trigger.type.toLowerCase()) {
    case 'httptrigger': {
      const { route, methods, authLevel } = trigger;
      described.route = typeof route === 'string' && route.trim() !== '' ? route : metadata.name;
      // Without `methods` the host accepts every method.
      if (Array.isArray(methods)) described.methods = methods.map((m) => String(m).toUpperCase());
      described.authLevel = typeof authLevel === 'string' ? authLevel.toLowerCase() : 'function';
      break;
    }
    case 'timertrigger':
      if (typeof trigger.schedule !== 'string') {
        throw new Error(`Timer function "${metadata.name}" has no schedule.`);
      }
      described.schedule = trigger.schedule;
      break;
    case 'queuetrigger':
      if (typeof trigger.queueName !== 'string' || trigger.queueName.trim() === '') {
        throw new Error(`Queue function "${metadata.name}" has no queueName.`);
      }
      described.queueName = trigger.queueName;
      if (typeof trigger.connection === 'string' && trigger.connection !== '')
        described.connection = trigger.connection;
      break;
  }
  return described;
}
