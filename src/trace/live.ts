/**
 * `--live`: send one real probe from the source and capture it on every hop's interface, so the walk is
 * confirmed by the packet itself. One tcpdump per (namespace, interface), started and listening before the probe
 * leaves; each capture is decoded with tulle's wire codec and the probe recognised by its addresses and a random
 * payload pattern (ICMP, UDP) or its destination port (TCP SYN). Captures stop once the probe was seen
 * everywhere or the deadline passed, and are removed with their temporary directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MissingRequirementError, TulleError } from '../base/errors.js';
import { hasProgram, run } from '../base/exec.js';
import { sleep } from '../base/retry.js';
import { dissect, readCapture, type Dissection } from '../wire/index.js';
import type { Hop, Probe, SeenFrame, TraceResult } from './types.js';

export class LiveCaptureError extends TulleError {
  constructor(message: string) {
    super('TLE_TRACE_CAPTURE', message);
  }
}

export interface LiveOptions {
  /** Namespace the probe is sent from (undefined: this process's). */
  sourceNamespace: string | undefined;
  /** ICMP payload bytes (ping -s); default 56, a 98-byte frame. */
  size?: number;
  /** VXLAN UDP ports to decode (the trace's outer port). */
  vxlanPorts?: number[];
  /** How long to wait for the probe to show up everywhere; default 3000 ms. */
  timeoutMs?: number;
  /** Which hops can be captured from here (a real host cannot capture on a remote host). */
  canCapture?: (hop: Hop) => boolean;
}

interface Capture {
  namespace: string | undefined;
  device: string;
  file: string;
  child: ChildProcess;
  exited: Promise<void>;
}

const TCPDUMP_READY_MS = 10_000;

function startCapture(dir: string, index: number, namespace: string | undefined, device: string): Promise<Capture> {
  const file = join(dir, `${index}.pcap`);
  const argv = ['tcpdump', '-i', device, '-n', '-U', '--immediate-mode', '-s', '2048', '-w', file];
  const child = spawn(namespace ? 'ip' : argv[0]!, namespace ? ['netns', 'exec', namespace, ...argv] : argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new LiveCaptureError(`tcpdump on ${device} in ${namespace ?? 'this namespace'} did not start listening: ${err.trim()}`));
    }, TCPDUMP_READY_MS);
    child.stderr.on('data', (d) => {
      err += d;
      if (/listening on/.test(err)) {
        clearTimeout(timer);
        resolve({ namespace, device, file, child, exited });
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new LiveCaptureError(`tcpdump on ${device} in ${namespace ?? 'this namespace'} exited (${code}): ${err.trim().split('\n').pop()}`));
    });
  });
}

/** The probe as captured on one interface, or undefined. */
async function findProbe(file: string, probe: Probe, pattern: Buffer, ports: Set<number>): Promise<SeenFrame | undefined> {
  try {
    for await (const rec of readCapture(file)) {
      const d = dissect(rec.buf, rec.offset, rec.end, { linkType: rec.linkType, vxlanPorts: ports, complete: rec.complete });
      const inner = d.vxlan && d.inner ? d.inner : d;
      if (!isProbe(inner, probe, pattern)) continue;
      const frame: SeenFrame = { length: rec.originalLength };
      if (d.vxlan && d.ipv4 && d.udp) frame.outer = { src: d.ipv4.src, dst: d.ipv4.dst, srcPort: d.udp.srcPort, dstPort: d.udp.dstPort, vni: d.vxlan.vni };
      return frame;
    }
  } catch {
    // A capture still being written can end mid-record: read again later.
  }
  return undefined;
}

function isProbe(d: Dissection, probe: Probe, pattern: Buffer): boolean {
  const ip = d.ipv4;
  if (!ip || ip.src !== probe.src || ip.dst !== probe.dst) return false;
  const payload = ip.buf.subarray(ip.payloadOffset, ip.payloadEnd);
  if (probe.proto === 'icmp') return ip.protocol === 1 && payload[0] === 8 && payload.includes(pattern);
  if (probe.proto === 'udp') return ip.protocol === 17 && payload.includes(pattern);
  return ip.protocol === 6 && payload.length >= 4 && payload.readUInt16BE(2) === probe.port;
}

/** Send the probe from the source namespace; resolves when the sender is done (ping's reply or its timeout). */
async function sendProbe(namespace: string | undefined, probe: Probe, pattern: Buffer, size: number): Promise<void> {
  const wrap = (argv: string[]) => (namespace ? ['ip', 'netns', 'exec', namespace, ...argv] : argv);
  if (probe.proto === 'icmp') {
    await run(wrap(['ping', '-c1', '-W2', '-n', '-M', 'do', '-s', String(size), '-p', pattern.toString('hex'), probe.dst]), { allowFailure: true });
    return;
  }
  // A tiny sender in the source namespace: one datagram carrying the pattern, or one connection attempt (SYN).
  const script =
    probe.proto === 'udp'
      ? `const s=require('dgram').createSocket('udp4');s.send(Buffer.from('${pattern.toString('hex')}','hex'),${probe.port},'${probe.dst}',()=>s.close())`
      : `const c=require('net').connect(${probe.port},'${probe.dst}');c.on('error',()=>{});setTimeout(()=>{c.destroy();process.exit(0)},1500)`;
  await run(wrap([process.execPath, '-e', script]), { allowFailure: true });
}

/** Run the probe and mark every hop of `result` seen or not; names the first hop where it vanished. */
export async function confirmLive(result: TraceResult, options: LiveOptions): Promise<TraceResult> {
  if (!hasProgram('tcpdump')) throw new MissingRequirementError('tcpdump', 'install it (scripts/install-deps.sh) to use --live');
  const probe = result.probe;
  const pattern = randomBytes(16);
  const ports = new Set([4789, 8472, ...(options.vxlanPorts ?? []), ...(result.outer ? [result.outer.dstPort] : [])]);
  const canCapture = options.canCapture ?? (() => true);
  const dir = mkdtempSync(join(tmpdir(), 'tulle-trace-'));
  const captures = new Map<string, Capture>();
  const key = (h: Hop) => `${h.namespace}\u0000${h.device}`;
  let points: Hop[] = [];
  let started: PromiseSettledResult<Capture>[] = [];
  try {
    points = result.hops.filter(canCapture).filter((h, i, all) => all.findIndex((x) => key(x) === key(h)) === i);
    started = await Promise.allSettled(points.map((h, i) => startCapture(dir, i, h.namespace.startsWith('(') ? undefined : h.namespace, h.device)));
    started.forEach((s, i) => s.status === 'fulfilled' && captures.set(key(points[i]!), s.value));
    await sendProbe(options.sourceNamespace, probe, pattern, options.size ?? 56);
    const seen = new Map<string, SeenFrame>();
    const deadline = Date.now() + (options.timeoutMs ?? 3000);
    for (;;) {
      for (const [k, c] of captures)
        if (!seen.has(k)) {
          const f = await findProbe(c.file, probe, pattern, ports);
          if (f) seen.set(k, f);
        }
      if (seen.size === captures.size || Date.now() > deadline) break;
      await sleep(100);
    }
    for (const c of captures.values()) c.child.kill('SIGINT');
    await Promise.all([...captures.values()].map((c) => c.exited));
    for (const [k, c] of captures)
      if (!seen.has(k)) {
        const f = await findProbe(c.file, probe, pattern, ports);
        if (f) seen.set(k, f);
      }
    // A capture that could not start (an interface that is down) saw nothing: the probe is not there.
    const failed = new Set(points.filter((_, i) => started[i]!.status === 'rejected').map(key));
    const hops = result.hops.map((h) => {
      if (failed.has(key(h))) return { ...h, seen: false };
      if (!captures.has(key(h))) return h;
      const f = seen.get(key(h));
      return { ...h, seen: f !== undefined, ...(f ? { frame: f } : {}) };
    });
    const lost = hops.find((h) => h.seen === false);
    return { ...result, hops, vanishedAt: lost ? { host: lost.host, device: lost.device } : null };
  } finally {
    for (const c of captures.values()) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
