/**
 * The benchmarks of the suite, in the order they run, each with what it measures and how its result file turns
 * into report rows. The benchmarks written for this suite put their rows in their result; the older ones
 * (netlink-program, decode-throughput, cni-latency) have their own result shapes, read here.
 */
import * as cniLatency from './cni-latency.js';
import * as convergence from './convergence.js';
import * as dataplane from './dataplane.js';
import * as decodeThroughput from './decode-throughput.js';
import * as netlinkProgram from './netlink-program.js';
import * as scale from './scale.js';
import { round, row, type BenchRow } from './common.js';

export interface Benchmark {
  name: string;
  title: string;
  /** What is measured against what, for the report. */
  summary: string;
  run(options: { quick: boolean; output: string }): Promise<unknown>;
  rows(result: any): BenchRow[];
  /** Further figures worth reading (percentiles, spreads), one line each. */
  notes(result: any): string[];
}

const ownRows = (r: { rows: BenchRow[] }): BenchRow[] => r.rows;
const ownNotes = (r: { notes?: string[] }): string[] => r.notes ?? [];

export const BENCHMARKS: readonly Benchmark[] = [
  {
    name: dataplane.NAME,
    title: 'Data plane: pod-to-pod TCP throughput and ping RTT',
    summary:
      'iperf3 and ping from a pod on host h1 to a pod on host h2 of a 2-host lab on a routed underlay, through the overlay tulle configured; ' +
      "against the underlay host to host in the same lab, and against the same overlay built by hand with iproute2 (flannel's layout as in seeds 001-003: flannel.1 nolearning noudpcsum, cni0, MTU 1450 everywhere) in a second lab. " +
      'The paths take turns; medians over the runs, RTT percentiles over every ping (ping prints RTTs under 1 ms in whole microseconds; each reading is taken as spread over its microsecond and the percentile interpolated inside it, so p50 resolves fractions of one). The guard rows compare tulle with and without its VXLAN guard in two labs that swap the setting half-way. For RTT the ratio is baseline RTT / tulle RTT, so higher is better in every row.',
    run: (o) => dataplane.run(o),
    rows: ownRows,
    notes: (r: dataplane.DataplaneResult) => [
      ...[...Object.values(r.paths), ...(r.guard ? [r.guard.on, r.guard.off] : [])].map(
        (p) =>
          `${p.label}: throughput runs ${p.throughputRunsGbps.join(', ')} Gbit/s; RTT p50 ${p.rttMs.p50} ms, p99 ${p.rttMs.p99} ms, max ${p.rttMs.max} ms over ${p.rttMs.samples} pings (${p.pingsLost} lost)`,
      ),
      ...(r.guard
        ? [
            "guard rows: each lab ran half of its rounds with the guard and half without (the agents restarted with the other setting between the halves), so the two labs' own difference cancels out",
          ]
        : []),
      ...(r.guardClose
        ? (['bare', 'hookInUse'] as const).map((k) => {
            const c = r.guardClose[k];
            const us = (ms: number) => round(ms * 1000, 2);
            return (
              `pings 1 ms apart, ${k === 'bare' ? 'hosts as the lab made them (the guard is their only netfilter input hook)' : "another table's empty input chain on every host"}: ` +
              `with the guard mean of the fastest 90% ${us(c.on.fastMeanMs)} us, p50 ${us(c.on.rttMs.p50)} us, p99 ${us(c.on.rttMs.p99)} us over ${c.on.rttMs.samples} pings (${c.on.pingsLost} lost); ` +
              `without ${us(c.off.fastMeanMs)} us, p50 ${us(c.off.rttMs.p50)} us, p99 ${us(c.off.rttMs.p99)} us over ${c.off.rttMs.samples} (${c.off.pingsLost} lost); ` +
              `the guard's cost per round trip ${us(c.on.fastMeanMs - c.off.fastMeanMs)} us`
            );
          })
        : []),
      `hand-made overlay / underlay (what VXLAN itself costs here, whoever configures it): throughput ${r.handOverUnderlay.throughput}, RTT p50 ${r.handOverUnderlay.rttP50}, RTT p99 ${r.handOverUnderlay.rttP99}`,
      ...(r.tulleOverHandPerRound
        ? [
            `throughput tulle / hand-made per round (back-to-back runs): ${r.tulleOverHandPerRound.join(', ')}; tulle's two agents used ${r.agentCpuPercent}% of the machine's CPU meanwhile`,
          ]
        : []),
    ],
  },
  {
    name: convergence.NAME,
    title: 'Convergence: a new host reaches every other host',
    summary:
      'Agents on N-1 hosts of an N-host lab; the N-th agent starts, and the time from its lease being written to the store (the timestamp of the lease itself, checked against a watch in the benchmark) ' +
      "to each other host's kernel announcing the route, neighbour and FDB entry for it (netlink events per host namespace) is taken; the host then leaves and joins again. " +
      'The VXLAN guard against no guard in the same lab: the joins alternate between the N-1 agents running with and without it in ABBA order ' +
      '(on, off, off, on, ... with 3 joins in a row each; the agents restarted with the other setting, ready, converged and quiet again, and warmed up by one unmeasured join, before the next), ' +
      "so a change in the machine's load weighs on both settings alike. " +
      'Baseline: the same three entries written by iproute2 into N-1 spare namespaces at once.',
    run: (o) => convergence.run(o),
    rows: ownRows,
    notes: ownNotes,
  },
  {
    name: scale.NAME,
    title: 'Scale: thousands of peers on one agent',
    summary:
      'N synthetic peer leases written into the store of a 1-host lab. Program: the agent is paused while they are written and timed from its resumption until the kernel announced all 3N entries, ' +
      'against ip -batch + bridge -batch of the same entries into a fresh namespace, timed the same way (the same observer listens there: a listener costs the writer kernel time). No-op reconcile: the first reconcile after a restart with everything in place (from /metrics), ' +
      'against iproute2 reading the same entries back. RSS from /proc/PID/status right after a fresh agent took on the N peers, against the same agent with no peers.',
    run: (o) => scale.run(o),
    rows: ownRows,
    notes: ownNotes,
  },
  {
    name: cniLatency.NAME,
    title: 'CNI ADD/DEL/STATUS latency',
    summary:
      'One plugin process per call, executed and timed by a long-lived executor inside the host namespace as a runtime does, taking turns pod by pod: tulle in bridge mode through its compiled shim and the CNI server (resident), ' +
      'the same shim falling back to the Node plugin (fallback), and the reference bridge + host-local plugins making the same attachment.',
    run: (o) => cniLatency.run(o),
    rows: (r: cniLatency.BenchResult) => [
      ...(['ADD', 'DEL'] as const).flatMap((c) => {
        const x = r.results[c];
        const base = {
          benchmark: cniLatency.NAME,
          size: `${r.sizes.pods} pods`,
          unit: 'ms',
          baselineLabel: 'reference bridge + host-local',
          ratioLabel: 'tulle / reference',
        };
        return [
          row({
            ...base,
            metric: `CNI ${c} latency p50, resident`,
            figure: x.tulle.p50,
            baseline: x.reference.p50,
            ratio: x.ratio,
            goal: { on: 'ratio', op: '<=', value: x.goal, text: `tulle / reference <= ${x.goal}` },
          }),
          row({
            ...base,
            metric: `CNI ${c} latency p99, resident`,
            figure: x.tulle.p99,
            baseline: x.reference.p99,
            ratio: x.ratioP99,
            goal: { on: 'ratio', op: '<=', value: x.goalP99, text: `tulle / reference <= ${x.goalP99}` },
          }),
          row({
            ...base,
            metric: `CNI ${c} latency p50, fallback (Node plugin)`,
            figure: x.fallback.p50,
            baseline: x.reference.p50,
            ratio: x.fallbackRatio,
            goal: { on: 'ratio', op: '<=', value: x.fallbackGoal, text: `tulle / reference <= ${x.fallbackGoal}` },
          }),
        ];
      }),
      row({
        benchmark: cniLatency.NAME,
        metric: 'CNI STATUS latency p50, resident',
        size: `${r.sizes.pods} calls`,
        figure: r.results.STATUS.tulle.p50,
        unit: 'ms',
        baseline: r.results.STATUS.fallback.p50,
        baselineLabel: 'fallback (Node plugin)',
        ratio: round(r.results.STATUS.tulle.p50 / r.results.STATUS.fallback.p50, 2),
        ratioLabel: 'resident / fallback',
        goal: { on: 'figure', op: '<=', value: r.results.STATUS.goalMs, text: `<= ${r.results.STATUS.goalMs} ms` },
      }),
    ],
    notes: (r: cniLatency.BenchResult) => [
      ...(['ADD', 'DEL'] as const).map((c) => {
        const x = r.results[c];
        return `${c}: resident p50 ${x.tulle.p50} ms, p99 ${x.tulle.p99} ms; fallback p50 ${x.fallback.p50} ms, p99 ${x.fallback.p99} ms; reference p50 ${x.reference.p50} ms, p99 ${x.reference.p99} ms`;
      }),
      `STATUS: resident p50 ${r.results.STATUS.tulle.p50} ms, p99 ${r.results.STATUS.tulle.p99} ms; fallback p50 ${r.results.STATUS.fallback.p50} ms (the reference plugins have no STATUS)`,
      `floors, run by the same executor: node -e 0 p50 ${r.nodeStartup.p50} ms (under any Node plugin), true p50 ${r.execFloor.p50} ms (under any plugin)`,
    ],
  },
  {
    name: decodeThroughput.NAME,
    title: 'Codec and `tulle decode`: decoding VXLAN frames',
    summary:
      "tulle's decoder on 148-byte VXLAN frames against tshark printing the same fields, tshark's start-up time subtracted. " +
      'End to end: the `tulle decode` command on the same million-frame file (text, --json, --count, and the text read from a pipe) against `tcpdump -nn -e -r` of that file, ' +
      'all writing to /dev/null, taking turns round by round; medians of the wall times, the CPU times in the notes.',
    run: (o) => decodeThroughput.run(o),
    rows: (r: decodeThroughput.DecodeBenchResult) => {
      const base = {
        benchmark: decodeThroughput.NAME,
        metric: 'decode 148-byte VXLAN frames',
        size: `${r.sizes.tulleFrames.toLocaleString('en-US')} frames`,
        figure: r.tullePps,
        unit: 'frames/s',
        baseline: r.tsharkPps,
        baselineLabel: 'tshark (start-up excluded)',
        ratio: r.ratio,
        ratioLabel: 'tulle / tshark',
      };
      const rows = [
        row({ ...base, goal: { on: 'ratio', op: '>=', value: r.goals.ratio, text: `tulle / tshark >= ${r.goals.ratio}` } }),
        row({ ...base, goal: { on: 'figure', op: '>=', value: r.goals.tullePps, text: `>= ${r.goals.tullePps.toLocaleString('en-US')} frames/s` } }),
      ];
      const e = r.endToEnd;
      if (!e) return rows; // results from before the end-to-end rows
      const size = `${e.frames.toLocaleString('en-US')} frames`;
      for (const [k, metric] of [
        ['text', 'tulle decode FILE, end to end'],
        ['json', 'tulle decode --json FILE, end to end'],
        ['count', 'tulle decode --count FILE, end to end'],
      ] as const) {
        rows.push(
          row({
            benchmark: decodeThroughput.NAME,
            metric,
            size,
            figure: e.wallSec[k],
            unit: 's',
            baseline: e.wallSec.tcpdump,
            baselineLabel: 'tcpdump -nn -e -r FILE',
            ratio: e.ratios[k],
            ratioLabel: 'tulle / tcpdump',
            goal: { on: 'ratio', op: '<=', value: e.goals[k], text: `tulle / tcpdump <= ${e.goals[k]}` },
          }),
        );
      }
      rows.push(
        row({
          benchmark: decodeThroughput.NAME,
          metric: 'cat FILE | tulle decode -, end to end',
          size,
          figure: e.wallSec.stdin,
          unit: 's',
          baseline: e.wallSec.text,
          baselineLabel: 'tulle decode FILE',
          ratio: e.ratios.stdin,
          ratioLabel: 'pipe / file',
          goal: { on: 'ratio', op: '<=', value: e.goals.stdin, text: `pipe / file <= ${e.goals.stdin}` },
        }),
      );
      return rows;
    },
    notes: (r: decodeThroughput.DecodeBenchResult) => [
      `tulle runs: ${r.tulleRunsPps.map((x) => x.toLocaleString('en-US')).join(', ')} frames/s; on tshark's smaller file ${r.tulleSameFilePps.toLocaleString('en-US')} frames/s; tshark start-up ${r.tsharkStartupMs} ms`,
      ...(r.endToEnd
        ? [
            `end to end, CPU time (user + system) medians: tcpdump ${r.endToEnd.cpuSec.tcpdump} s, tulle text ${r.endToEnd.cpuSec.text} s (${r.endToEnd.cpuRatios.text}x), --json ${r.endToEnd.cpuSec.json} s (${r.endToEnd.cpuRatios.json}x), --count ${r.endToEnd.cpuSec.count} s (${r.endToEnd.cpuRatios.count}x), from a pipe ${r.endToEnd.cpuSec.stdin} s with cat (${r.endToEnd.cpuRatios.stdin}x the file)`,
            `end to end, wall times per round (s): ${Object.entries(r.endToEnd.runsWallSec)
              .map(([k, v]) => `${k} ${v.join(', ')}`)
              .join('; ')}`,
          ]
        : []),
    ],
  },
  {
    name: netlinkProgram.NAME,
    title: 'Netlink: programming peers',
    summary:
      "tulle's netlink client programming N peers (neighbour, FDB entry, route each) onto a VTEP and dumping them back, against ip -batch + bridge -batch and the -j dumps, fresh namespace per run.",
    run: (o) => netlinkProgram.run(o),
    rows: (r: netlinkProgram.BenchResult) =>
      r.results.map((x) =>
        row({
          benchmark: netlinkProgram.NAME,
          metric: 'program and dump back N peers',
          size: `${x.size} peers`,
          figure: x.tulleMs,
          unit: 'ms',
          baseline: x.iprouteMs,
          baselineLabel: 'ip -batch + bridge -batch + dumps',
          ratio: x.ratio,
          ratioLabel: 'tulle / iproute2',
          goal: { on: 'ratio', op: '<=', value: x.goal, text: `tulle / iproute2 <= ${x.goal.toFixed(1)}` },
        }),
      ),
    notes: (r: netlinkProgram.BenchResult) => [
      `medians of ${r.results[0]?.repetitions ?? '?'} runs per size; ratios: ${r.results.map((x) => `${x.size}: ${round(x.ratio, 3)}`).join(', ')}`,
    ],
  },
];

export function benchmarkNamed(name: string): Benchmark | undefined {
  return BENCHMARKS.find((b) => b.name === name);
}
