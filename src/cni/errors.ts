/**
 * CNI errors. A plugin reports failure as `{"cniVersion", "code", "msg", "details"}` on stdout and a non-zero exit.
 * Codes 1..99 are the spec's well-known ones (runtimes act on them: 11 means "retry later", 3 means "nothing to
 * clean up"); 100 and up are tulle's own. Every CniError is also a TulleError with a stable TLE_CNI_* code, so
 * library callers and tests branch on either number or name, never on the text.
 *
 * This module is loaded on every plugin start: it imports nothing heavy.
 */
import { TulleError, formatValue } from '../base/errors.js';

/** The CNI spec versions tulle-cni speaks, oldest first; results are written in the version the config asks for. */
export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

/** CNI error codes: the spec's well-known ones, then tulle's (>= 100). */
export const CNI_CODES = {
  /** The config's cniVersion is not one this plugin speaks (or too old for the command). */
  INCOMPATIBLE_VERSION: 1,
  /** A config key tulle-cni does not support (the message names key and value). */
  UNSUPPORTED_FIELD: 2,
  /** CNI_NETNS names no namespace: the container is gone, the runtime need not clean up. */
  UNKNOWN_CONTAINER: 3,
  /** A CNI_* environment variable is missing or malformed. */
  INVALID_ENVIRONMENT: 4,
  /** Reading or writing the IPAM directory failed. */
  IO_FAILURE: 5,
  /** stdin is not a JSON object. */
  DECODE_FAILURE: 6,
  /** A config field breaks a rule. */
  INVALID_CONFIG: 7,
  /** Transient: the agent has not written subnet.env yet. */
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot serve ADD now. */
  NOT_AVAILABLE: 50,
  /** No free address left in the host's subnet. */
  ADDRESS_EXHAUSTED: 100,
  /** CNI_IFNAME already exists in the container. */
  INTERFACE_EXISTS: 101,
  /** This container ID + interface already holds an address (ADD twice without DEL). */
  ALREADY_ALLOCATED: 102,
  /** The bridge exists but is not a bridge, or holds another subnet's gateway. */
  BRIDGE_CONFLICT: 103,
  /** CHECK found the attachment not as ADD left it. */
  CHECK_FAILED: 104,
  /** subnet.env exists but cannot be parsed. */
  SUBNET_ENV_INVALID: 105,
  /** The address the runtime asked for (CNI_ARGS IP=, runtimeConfig.ips) is held by another attachment. */
  ADDRESS_IN_USE: 106,
  /** L2 Flood "none": ADD needs the agent (only it can publish the pod's endpoint record); the plugin ran alone. */
  AGENT_REQUIRED: 107,
  /** L2 Flood "none": the pod's endpoint record could not be published; the attachment was undone. */
  ENDPOINT_PUBLISH: 108,
  /** A kernel operation failed (the message names the `ip` command and errno). */
  KERNEL: 110,
  /** Anything unexpected (the Go library's ErrInternal). */
  INTERNAL: 999,
} as const;

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(CNI_CODES).map(([k, v]) => [v, `TLE_CNI_${k}`]));

export class CniError extends TulleError {
  /** The number written to stdout as `code`. */
  readonly cniCode: number;
  /** Longer explanation written as `details` (optional). */
  readonly details: string | undefined;
  /** The cniVersion of the error object; set once the config's version is known. */
  cniVersion: string | undefined;

  constructor(cniCode: number, message: string, options?: { details?: string; cause?: unknown }) {
    super(NAMES[cniCode] ?? 'TLE_CNI_ERROR', message, { cause: options?.cause });
    this.cniCode = cniCode;
    this.details = options?.details;
  }
}

/** A config field that breaks a rule: `mode: "vxlan" is not a mode (must be "bridge" or "routed")`. */
export function invalidConfig(field: string, value: unknown, rule: string): CniError {
  return new CniError(CNI_CODES.INVALID_CONFIG, `${field}: ${formatValue(value)} ${rule}`);
}

/** A CNI_* variable that is missing or malformed; the message names the variable, as the spec asks. */
export function invalidEnvironment(variable: string, value: unknown, rule: string): CniError {
  return new CniError(CNI_CODES.INVALID_ENVIRONMENT, `${variable}: ${formatValue(value)} ${rule}`);
}

/** The error object a plugin prints on stdout. */
export interface CniErrorObject {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/**
 * Any failure as a CNI error object. Other modules' TulleErrors map by their code (no import of those modules, to
 * keep startup light): a missing subnet.env is "try again later", a netlink failure is a kernel error, a lock or
 * file-system failure an I/O failure.
 */
export function toErrorObject(err: unknown, fallbackVersion: string = LATEST_VERSION): CniErrorObject {
  const e = asCniError(err);
  const out: CniErrorObject = { cniVersion: e.cniVersion ?? fallbackVersion, code: e.cniCode, msg: e.message };
  if (e.details) out.details = e.details;
  return out;
}

export function asCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof TulleError) {
    switch (err.code) {
      case 'TLE_SUBNET_ENV_MISSING':
        return new CniError(CNI_CODES.TRY_AGAIN_LATER, err.message, { cause: err });
      case 'TLE_SUBNET_ENV':
        return new CniError(CNI_CODES.SUBNET_ENV_INVALID, err.message, { cause: err });
      case 'TLE_NETLINK':
        return new CniError(CNI_CODES.KERNEL, err.message, { cause: err });
      case 'TLE_LOCK':
        return new CniError(CNI_CODES.IO_FAILURE, err.message, { cause: err });
      default:
        return new CniError(CNI_CODES.INTERNAL, `${err.message} [${err.code}]`, { cause: err });
    }
  }
  const sys = err as NodeJS.ErrnoException;
  if (sys && typeof sys.code === 'string' && typeof sys.syscall === 'string') {
    return new CniError(CNI_CODES.IO_FAILURE, `${sys.syscall}${sys.path ? ` ${sys.path}` : ''}: ${sys.code}`, { cause: err });
  }
  return new CniError(CNI_CODES.INTERNAL, err instanceof Error ? err.message : String(err), { cause: err });
}
