/**
 * The emulator's programmable world: users, administration groups, hosts with products,
 * and group tasks. Tests build one with `defaultModel()` and change it freely (the server
 * reads it on every call).
 */

export interface EmuUser {
  user: string;
  password: string;
  /** Read-only users get a PxgError (access denied) from RunTask. */
  readOnly?: boolean;
}

export interface EmuGroup {
  id: number;
  name: string;
  /** null for the root "Managed devices" group (id 0). */
  parentId: number | null;
}

export interface EmuProduct {
  /** Product key: `KES`, `KESL`, `1103` (Network Agent). */
  product: string;
  version: string;
  displayName: string;
  build?: string;
}

export interface EmuHost {
  /** KLHST_WKS_HOSTNAME: the server-generated unique id (GUID-like). */
  id: string;
  /** KLHST_WKS_DN. */
  displayName: string;
  fqdn?: string;
  /** KLHST_WKS_WINDOMAIN. */
  domain?: string;
  ip?: string;
  connectIp?: string;
  os?: string;
  groupId: number;
  lastVisible?: Date;
  /** Network Agent installed (KLHST_WKS_STATUS bit 0x4, KLHST_INSTANCEID non-empty). */
  nagent: boolean;
  nagentConnected?: Date;
  products: EmuProduct[];
  /** KLHST_WKS_MAC_ADDRESSES, written `aa:bb:cc:dd:ee:ff` here, sent as paramBinary(6). */
  macs?: string[];
  /** KLHST_WKS_STATUS_ID: 0 OK, 1 critical, 2 warning. */
  statusId?: number;
  /** KLHST_WKS_RTP_AV_BASES_TIME. */
  avBases?: Date;
  /** KLHST_WKS_CTYPE / KLHST_WKS_PTYPE. */
  computerType?: number;
  platformType?: number;
  /** Owner (KLHST_WKS_OWNER_NAME / _ID: attribute names are a GUESS, not in OPEN-API.md). */
  owner?: { name: string; id: string };
  /** Installed programs (InventoryApi.GetHostInvProducts); KSC has them for Windows only. */
  software?: EmuSoftware[];
  /** Installed patches (InventoryApi.GetHostInvPatches). */
  patches?: EmuSoftware[];
  /** Rows of the vulnerability view (SrvView v_vapm_vulnerability). */
  vulnerabilities?: EmuVulnerability[];
}

export interface EmuSoftware {
  name: string;
  version: string;
  publisher: string;
  /** `YYYYMMDD`, as GetHostInvProducts sends InstallDate. */
  installDate?: string;
}

export interface EmuVulnerability {
  id: string;
  severity: number;
  product: string;
  productVersion?: string;
  url: string;
  detected: Date;
  ignored?: boolean;
}

export interface EmuTask {
  /** TASK_UNIQUE_ID, digits as a string. */
  id: string;
  displayName: string;
  /** TASK_NAME (task type). */
  taskType: string;
  product: string;
  version: string;
  component?: string;
  /** Group task: the group (with its subgroups) is the scope. */
  groupId?: number;
  /** Task for a device selection (HostList). */
  hostIds?: string[];
}

export interface EmuModel {
  users: EmuUser[];
  groups: EmuGroup[];
  hosts: EmuHost[];
  tasks: EmuTask[];
  /**
   * Inventory computed on demand instead of stored per host (large fleets: memory stays
   * bounded). Wins over the host's own `software`/`patches`/`vulnerabilities`.
   */
  inventory?: (h: EmuHost) => { software: EmuSoftware[]; patches: EmuSoftware[]; vulnerabilities: EmuVulnerability[] };
}

const DAY = 86_400_000;

export const NAGENT: EmuProduct = { product: '1103', version: '1.0.0.0', displayName: 'Kaspersky Security Center Network Agent', build: '14.0.0.4490' };
export const KES_WIN: EmuProduct = { product: 'KES', version: '11.0.0.0', displayName: 'Kaspersky Endpoint Security for Windows', build: '11.11.0.452' };
export const KES_LINUX: EmuProduct = { product: 'KESL', version: '11.4.0.0', displayName: 'Kaspersky Endpoint Security for Linux', build: '11.4.0.1096' };

/**
 * A small network: groups Managed devices (0) > Workstations (1), Servers (2), Linux (3);
 * five hosts (Windows and Linux, one unseen for 40 days; WS-0142 with software, patches and vulnerabilities) and tasks,
 * some named KUMA*, with different scopes and products.
 */
export function defaultModel(now = new Date()): EmuModel {
  const ago = (d: number): Date => new Date(now.getTime() - d * DAY);
  return {
    users: [
      { user: 'kuma', password: 'S3cret-KSC-pass!w0rd' },
      { user: 'viewer', password: 'viewer-pass-123', readOnly: true },
    ],
    groups: [
      { id: 0, name: 'Managed devices', parentId: null },
      { id: 1, name: 'Workstations', parentId: 0 },
      { id: 2, name: 'Servers', parentId: 0 },
      { id: 3, name: 'Linux', parentId: 0 },
    ],
    hosts: [
      {
        id: 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1', displayName: 'WS-0142', fqdn: 'ws-0142.corp.example', domain: 'CORP', ip: '10.0.12.42',
        os: 'Microsoft Windows 10 Pro', groupId: 1, lastVisible: ago(0.01), nagent: true, nagentConnected: ago(0.01), products: [NAGENT, KES_WIN],
        macs: ['00:1a:2b:3c:4d:42', '00:1a:2b:3c:4d:43'], statusId: 2, avBases: new Date('2024-05-01T04:00:00Z'), computerType: 1, platformType: 1,
        owner: { name: 'CORP\\j.smith', id: 'S-1-5-21-1004' },
        software: [
          { name: 'Microsoft Edge', version: '124.0.2478.80', publisher: 'Microsoft Corporation', installDate: '20240502' },
          { name: '7-Zip 23.01 (x64)', version: '23.01', publisher: 'Igor Pavlov', installDate: '20231115' },
          { name: 'Mozilla Firefox (x64 en-US)', version: '115.0', publisher: 'Mozilla', installDate: '20230710' },
        ],
        patches: [{ name: 'Security Update for Windows (KB5036892)', version: '1', publisher: 'Microsoft Corporation', installDate: '20240410' }],
        vulnerabilities: [
          { id: 'KLA10001', severity: 3, product: 'Mozilla Firefox', productVersion: '115.0', url: 'https://threats.kaspersky.com/en/vulnerability/KLA10001/', detected: new Date('2024-04-20T10:00:00Z') },
          { id: 'KLA10002', severity: 1, product: 'Mozilla Firefox', productVersion: '115.0', url: 'https://threats.kaspersky.com/en/vulnerability/KLA10002/', detected: new Date('2024-04-21T10:00:00Z'), ignored: true },
        ],
      },
      {
        id: '7d1e0a51-93c6-4a2b-9d0e-2b9c5d3e0177', displayName: 'WS-0177', fqdn: 'ws-0177.corp.example', domain: 'CORP', ip: '10.0.12.77',
        os: 'Microsoft Windows 11 Enterprise', groupId: 1, lastVisible: ago(1), nagent: true, nagentConnected: ago(1), products: [NAGENT, KES_WIN],
      },
      {
        id: '0a3f6c2e-5b1d-4e8f-a7c9-3d2e1f0a1111', displayName: 'SRV-FILE01', fqdn: 'srv-file01.corp.example', domain: 'CORP', ip: '10.0.20.11',
        connectIp: '192.168.50.11', os: 'Microsoft Windows Server 2019 Standard', groupId: 2, lastVisible: ago(0.1), nagent: true, nagentConnected: ago(0.1),
        products: [NAGENT, KES_WIN],
      },
      {
        id: 'e4b8d2f0-1c3a-4b5d-8e9f-0a1b2c3d4e5f', displayName: 'lnx-web01', fqdn: 'lnx-web01.corp.example', ip: '10.0.30.5',
        os: 'Ubuntu 22.04 LTS', groupId: 3, lastVisible: ago(0.2), nagent: true, nagentConnected: ago(0.2), products: [NAGENT, KES_LINUX],
        macs: ['52:54:00:12:34:05'], statusId: 0,
      },
      {
        id: 'f0f0f0f0-0000-4000-8000-00000000dead', displayName: 'OLD-LAPTOP', fqdn: 'old-laptop.corp.example', domain: 'CORP', ip: '10.0.12.250',
        os: 'Microsoft Windows 10 Pro', groupId: 1, lastVisible: ago(40), nagent: true, nagentConnected: ago(40), products: [NAGENT],
      },
    ],
    tasks: [
      { id: '17', displayName: 'Update', taskType: 'Updater', product: 'KES', version: '11.0.0.0', groupId: 0 },
      { id: '21', displayName: 'KUMA Virus scan (Windows)', taskType: 'ODS', product: 'KES', version: '11.0.0.0', groupId: 0 },
      { id: '22', displayName: 'KUMA Update (Windows)', taskType: 'Updater', product: 'KES', version: '11.0.0.0', groupId: 1 },
      { id: '31', displayName: 'kuma virus scan (Linux)', taskType: 'ODS', product: 'KESL', version: '11.4.0.0', groupId: 3 },
      { id: '40', displayName: 'KUMA Scan servers', taskType: 'ODS', product: 'KES', version: '11.0.0.0', groupId: 2 },
      { id: '41', displayName: 'KUMA Scan selection', taskType: 'ODS', product: 'KES', version: '11.0.0.0', hostIds: ['7d1e0a51-93c6-4a2b-9d0e-2b9c5d3e0177'] },
      { id: '50', displayName: 'Backup data', taskType: 'KLNAG_TASK_BACKUP', product: '1093', version: '1.0.0.0', groupId: 0 },
    ],
  };
}

/** Ids of `groupId` and all its ancestors. */
export function groupAncestry(m: EmuModel, groupId: number): number[] {
  const out: number[] = [];
  let g = m.groups.find((x) => x.id === groupId);
  const seen = new Set<number>();
  while (g !== undefined && !seen.has(g.id)) {
    seen.add(g.id);
    out.push(g.id);
    g = g.parentId === null ? undefined : m.groups.find((x) => x.id === g!.parentId);
  }
  return out;
}

/** The hosts a task runs on when started: its group with subgroups, or its host list. */
export function taskScope(m: EmuModel, t: EmuTask): EmuHost[] {
  if (t.hostIds !== undefined) return m.hosts.filter((h) => t.hostIds!.includes(h.id));
  if (t.groupId === undefined) return [];
  return m.hosts.filter((h) => groupAncestry(m, h.groupId).includes(t.groupId!));
}
