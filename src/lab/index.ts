/**
 * The lab library: build (`labUp`), inspect (`listLabs`, `loadLabState`) and remove (`labDown`) clusters made
 * of network namespaces. Later parts plug in through `LabUpOptions.afterUnderlay` steps and
 * `registerLabProcess`.
 */
export {
  labUp,
  LabExistsError,
  LabUndoError,
  DEFAULT_HOSTS,
  DEFAULT_UNDERLAY,
  type LabUpOptions,
  type LabStep,
  type LabStepContext,
  type LabProgress,
} from './up.js';
export { labDown, LabTeardownError, type LabDownOptions, type LabDownResult } from './down.js';
export { listLabs, type LabSummary } from './list.js';
export {
  loadLabState,
  readLabState,
  updateLabState,
  registerLabProcess,
  unregisterLabProcess,
  labTopology,
  labHostFiles,
  agentLogOf,
  labsRoot,
  labDir,
  stateFilePath,
  LabNotFoundError,
  LabStateError,
  DEFAULT_LABS_DIR,
  type LabState,
  type LabStatus,
  type LabProcess,
  type LabHostFiles,
} from './state.js';
export { labNamespace, labPrefix, labOfNamespace, validateLabName, DEFAULT_LAB_NAME, MAX_LAB_NAME_LENGTH, MAX_HOSTS } from './names.js';
export {
  planTopology,
  UNDERLAYS,
  type Underlay,
  type LabTopology,
  type LabHost,
  type LabSwitch,
  type LabRouter,
  type LabPod,
  type LabSegment,
} from './topology.js';
export { resolveLabTarget } from './target.js';
export {
  overlaySteps,
  startAgent,
  startEtcd,
  stopAgent,
  removeHostFromOverlay,
  waitConverged,
  labStatus,
  type LabHostStatus,
  addPod,
  podNetconf,
  runTulleIn,
  runStoreCommand,
  readLabLeases,
  overlayRoutes,
  subnetFileOf,
  hostDir,
  cniSocketOf,
  validatePodCount,
  STORE_KINDS,
  POD_MODES,
  DEFAULT_NETWORK_CONFIG,
  MAX_PODS,
  TULLE_BIN,
  LabOverlayError,
  type OverlayOptions,
  type LabOverlay,
  type StoreKind,
  type PodMode,
} from './cluster.js';
