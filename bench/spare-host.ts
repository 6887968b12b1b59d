/**
 * Spare namespaces for the iproute2 baselines: each set up like a lab host's kernel as the agent leaves it, but
 * with no agent, so iproute2 can write the same peer entries into it. Made by a lab step, so they carry the lab's
 * name prefix and `lab down` removes them with the lab.
 */
import { run } from '../src/base/exec.js';
import { labNamespace, type LabStep } from '../src/lab/index.js';
import { VTEP } from './peer-observer.js';

const SPARE_ADDRESS = '203.0.113.10';

/**
 * `ip -n NS -batch -` of: an underlay `eth0` (one end of an up veth pair, 203.0.113.10/24) and `flannel.1`
 * (`type vxlan id 1 local 203.0.113.10 dev eth0 dstport 8472 nolearning noudpcsum`, up), as the agent makes it.
 */
export async function setUpSpare(ns: string): Promise<void> {
  const setup =
    'link add eth0 type veth peer name eth0p\n' +
    'link set eth0p up\n' +
    `addr add ${SPARE_ADDRESS}/24 dev eth0\n` +
    'link set eth0 up\n' +
    `link add ${VTEP} type vxlan id 1 local ${SPARE_ADDRESS} dev eth0 dstport 8472 nolearning noudpcsum\n` +
    `link set ${VTEP} up\n`;
  await run(['ip', '-n', ns, '-batch', '-'], { input: setup });
}

/** `ip -n NS link del flannel.1` and make it again: an empty VTEP for the next baseline run. */
export async function resetSpareVtep(ns: string): Promise<void> {
  await run(['ip', '-n', ns, '-batch', '-'], {
    input: `link del ${VTEP}\nlink add ${VTEP} type vxlan id 1 local ${SPARE_ADDRESS} dev eth0 dstport 8472 nolearning noudpcsum\nlink set ${VTEP} up\n`,
  });
}

/** A lab step (put before the overlay steps) creating spare namespaces `tulle-<lab>-<target>` for `targets`. */
export function spareNamespacesStep(targets: readonly string[]): LabStep {
  return {
    title: `create ${targets.length} spare namespace(s) for the iproute2 baseline`,
    run: async (ctx) => {
      const namespaces = targets.map((t) => labNamespace(ctx.name, t));
      await ctx.createNamespaces(namespaces);
      for (const ns of namespaces) await setUpSpare(ns);
    },
  };
}
