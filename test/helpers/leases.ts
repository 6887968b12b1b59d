/** Lease objects for unit tests of what consumes leases (admission, the reconciler). */
import { parseCidr4 } from '../../src/base/ip.js';
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

/** A host on 192.0.2.11 (eth0, 192.0.2.0/24) in 10.244.0.0/16 with flannel's defaults, as the reconciler sees it. */
export function hostContext(ownSubnet: string, ownVtepMac = '02:00:00:00:00:01') {
  return {
    vtep: 'flannel.1',
    underlay: 'eth0',
    underlayNetworks: [parseCidr4('192.0.2.0/24')],
    directRouting: false,
    ownSubnet,
    routeProtocol: 84,
    admission: { network: parseCidr4('10.244.0.0/16'), subnetLen: 24, vni: 1, ownVtepMac, localAddresses: new Set(['192.0.2.11']) },
  };
}
