/**
 * The VTEP's MAC is what every peer has in its neighbour and FDB entries for this host, so it must not change
 * when the agent restarts or the host reboots (peers would black-hole traffic until they see the new lease).
 * Order of truth: the existing device's MAC (the kernel still uses it), else the MAC saved in the state dir,
 * else a new random locally administered one; whichever is used is saved.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMac, randomMac } from '../base/ip.js';

export function vtepMacFile(stateDir: string, device: string): string {
  return join(stateDir, `${device}.mac`);
}

export function loadSavedMac(stateDir: string, device: string): string | undefined {
  try {
    return parseMac(readFileSync(vtepMacFile(stateDir, device), 'utf8').trim());
  } catch {
    return undefined;
  }
}

export function saveMac(stateDir: string, device: string, mac: string): void {
  mkdirSync(stateDir, { recursive: true });
  const file = vtepMacFile(stateDir, device);
  writeFileSync(`${file}.tmp`, `${mac}\n`);
  renameSync(`${file}.tmp`, file);
}

export function chooseVtepMac(existingDeviceMac: string | undefined, stateDir: string, device: string): string {
  const mac = existingDeviceMac ?? loadSavedMac(stateDir, device) ?? randomMac(randomBytes);
  if (loadSavedMac(stateDir, device) !== mac) saveMac(stateDir, device, mac);
  return mac;
}
