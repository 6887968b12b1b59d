/**
 * The wire codec: build and read Ethernet, ARP, IPv4/IPv6, UDP, ICMP/ICMPv6 and VXLAN; encapsulate and
 * decapsulate; read pcap/pcapng and write pcap. Decoded layers are views over the captured bytes.
 */
export * from './errors.js';
export * from './checksum.js';
export { formatIPv6, parseIPv6, readIPv4, writeIPv4 } from './address.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ipv4.js';
export * from './ipv6.js';
export * from './udp.js';
export * from './icmp.js';
export * from './vxlan.js';
export * from './flowhash.js';
export * from './encap.js';
export * from './frames.js';
export * from './dissect.js';
export * from './describe.js';
export * from './format.js';
export * from './filter.js';
export * from './record.js';
export * from './pcap.js';
export * from './pcapng.js';
export * from './capture.js';
