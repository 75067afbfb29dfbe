/** KSC Open API emulator for the tests (see server.ts for what it implements). */
export { KscEmulator, startKscEmulator, type EmulatorOptions, type TaskEventOptions, type CallRecord, type Faults } from './server.js';
export { defaultModel, groupAncestry, taskScope, NAGENT, KES_WIN, KES_LINUX, type EmuModel, type EmuHost, type EmuTask, type EmuGroup, type EmuUser, type EmuProduct, type EmuSoftware, type EmuVulnerability } from './model.js';
export { makeSelfSignedCert, type TestCertificate } from './cert.js';
export { taskStateCef, cefEscapeValue, CefTcpSender, STATE_NAMES, type TaskStateLine } from './cef.js';
export { parseFilter, matchFilter } from './filter.js';
