/**
 * The native binding (native/tulle_native.c, built by node-gyp on `npm ci` into build/Release). It does only
 * what Node cannot: open a netlink socket inside a network namespace, send/receive on it without blocking the
 * event loop, make a whole dump on a pool thread (read into records of numbers), read/write files inside a
 * namespace, and flock(). src/netlink uses the socket half, src/sys the rest.
 * Loaded lazily, so modules that merely import them (and unit tests of their pure parts) work without the build.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MissingRequirementError } from '../base/errors.js';

/** An opaque socket handle owned by the binding. */
export type SocketHandle = { readonly __brand: 'tulle-netlink-socket' };

export interface NativeBinding {
  open(
    nsPath: string | null,
    protocol: number,
    groups: number[],
    rcvbuf: number,
    sndbuf: number,
    flags: { extAck: boolean; capAck: boolean; strict: boolean },
  ): SocketHandle;
  send(handle: SocketHandle, data: Buffer): number;
  /**
   * The same sendto(), made by a libuv pool thread (data copied) while the loop goes on; queued sends of one socket
   * reach the kernel in the order queued. Resolves with the bytes sent.
   */
  sendQueued(handle: SocketHandle, data: Buffer): Promise<number>;
  /**
   * The datagrams queued on the socket now (back to back), without waiting; null when none. Only for a socket
   * startReading does not read: the replies to a request are queued before send() returns.
   */
  receiveNow(handle: SocketHandle): Buffer | null;
  /** `callback(error, data)`: data holds one or more whole datagrams, back to back. */
  startReading(handle: SocketHandle, callback: (error: NodeJS.ErrnoException | null, data: Buffer | null) => void): void;
  setReadingRef(handle: SocketHandle, ref: boolean): void;
  close(handle: SocketHandle): void;
  /** The port id the kernel gave the socket (the nlmsg_pid of the announcements of its requests). */
  portId(handle: SocketHandle): number;
  /**
   * Attach a socket filter to a listening socket: route and neighbour announcements with nlmsg_pid `portId` (the
   * writes of the socket with that port id) are dropped by the kernel before they are queued.
   */
  ignoreAnnouncementsOf(handle: SocketHandle, portId: number): void;
  /** Runs on a libuv pool thread (only that thread enters the namespace), so the event loop is never held up. */
  readFile(nsPath: string | null, path: string): Promise<string>;
  writeFile(nsPath: string | null, path: string, text: string): Promise<void>;
  flock(fd: number, mode: 'exclusive' | 'shared' | 'unlock'): Promise<void>;
  tryFlock(fd: number, mode: 'exclusive' | 'shared' | 'unlock'): boolean;
  /**
   * A whole route (kind 0) or neighbour / FDB (kind 1) dump, made by a pool thread on a socket of its own opened in
   * the namespace of `handle`'s socket, the request being one message (flags and sequence number set here). Each
   * entry becomes a record of numbers, in the meaning of src/netlink/scan.ts: a route [family 4|6, dst, dst length,
   * table, protocol, type, onlink 0|1, via (NaN: none), oif], table `filter` only (0: all; cached clones left out);
   * a neighbour [family, ifindex, state, flags, ip (NaN: none), mac (NaN: none)], device `filter` only (0: all).
   * With `dev`, the filter is that device's index, looked up in the namespace by the same pool thread (no lookup on
   * the event loop first) and written into the request at byte `indexAt`; ENODEV when there is no such device.
   * With `protocol`, a route dump keeps only that protocol's routes in `records` and the destinations of the other
   * IPv4 routes (the default route left out) in `others`, [dst, dst length] each.
   * `interrupted`: the kernel marked the dump inconsistent (the table changed under it); `filter`: the filter used.
   * Fails with the errno.
   */
  dumpRecords(
    handle: SocketHandle,
    request: Buffer,
    kind: 0 | 1,
    filter: number,
    dev?: string,
    indexAt?: number,
    protocol?: number,
  ): Promise<{ records: Float64Array; others: Float64Array; interrupted: boolean; filter: number }>;
  /** [name, message], e.g. ['ENETUNREACH', 'Network is unreachable']. */
  describeErrno(errno: number): [string, string];
}

/** build/Release/tulle_native.node at the repository root; this file runs from dist/src/sys/. */
export const BINDING_PATH = fileURLToPath(new URL('../../../build/Release/tulle_native.node', import.meta.url));

let binding: NativeBinding | undefined;

export function native(): NativeBinding {
  if (binding) return binding;
  if (!existsSync(BINDING_PATH)) {
    throw new MissingRequirementError(
      `the native netlink binding (${BINDING_PATH})`,
      'build it with `npm ci` (or `npx node-gyp rebuild`); it needs make, g++ and python3',
    );
  }
  binding = createRequire(import.meta.url)(BINDING_PATH) as NativeBinding;
  return binding;
}
