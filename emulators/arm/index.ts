export { startArmEmulator } from './server';
export type { ArmEmulatorOptions, RunningArmEmulator } from './server';
export type { HubSeed } from './admin';
export type { OperationFailure, RequestFault, RequestLogEntry, ThrottlingSettings } from './faults';
export type { HubDataCheck } from './hub-data';
export type { HubRef } from './hub-store';
export { hubIdOf } from './hub-store';
export { cmkHub } from './cmkHub';
export type { CmkHubOptions } from './cmkHub';
