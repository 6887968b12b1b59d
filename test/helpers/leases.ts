/** Lease objects for unit tests of what consumes leases (admission, the reconciler). */
import type { Lease } from '../../src/subnet/lease.js';

export function peerLease(subnet: string, publicIP: string, vtepMac: string, created = 1, over: Partial<Lease> = {}): Lease {
  return {
    subnet,
    key: `/coreos.com/network/subnets/${subnet.replace('/', '-')}`,
    publicIP,
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: vtepMac },
    expiration: new Date(Date.now() + 86_400_000),
    revision: created,
    created,
    extra: {},
    ...over,
  };
}
