/**
 * tulle-cni as a library, for the lab, tests and benchmarks: calling the plugin (or any CNI plugin, or a whole
 * configuration list) the way a runtime does, the host-side naming, the result checker and the IPAM format. The
 * plugin executable itself starts from main.ts, which never imports this file.
 */
export {
  cniInvoke,
  cniInvokeOk,
  runConflist,
  findPlugin,
  CniInvocationError,
  TULLE_CNI_BIN,
  TULLE_CNI_SHIM,
  type CniInvocation,
  type CniOutcome,
  type Conflist,
  type ChainOptions,
} from './invoke.js';
export { CNI_CODES, CniError, SUPPORTED_VERSIONS, LATEST_VERSION, type CniVersion, type CniErrorObject } from './errors.js';
export { hostVethName } from './names.js';
export { resultViolations } from './validate-result.js';
export { CniServer, CniServerError, DEFAULT_CNI_SOCKET, encodeRequest, type CniServerOptions } from './server.js';
export { ROUTED_GATEWAY } from './attach.js';
export { DEFAULTS as CNI_DEFAULTS, type NetConf, type Mode } from './netconf.js';
export { IpamStore, hostRange, candidateAddresses, parseOwner, type Allocation, type AddressRange } from './ipam.js';
