#!/usr/bin/env node
/**
 * `npm run package:deb`: builds cefd_<version>_<arch>.deb with dpkg-deb from the built
 * tree (run `npm run build` first; the npm script does). Architecture-specific because
 * better-sqlite3 ships a native module built for this machine's Node.js ABI.
 *
 * Layout: /usr/lib/cefd (dist/, production node_modules without typings, source maps,
 * tests and docs, package.json), /usr/bin/cefd,
 * /lib/systemd/system/cefd.{service,socket}, /etc/cefd/cefd.yaml (a conffile: the
 * effective configuration of deploy/cefd.yaml, every default spelled out),
 * /usr/share/cefd (alert rules, dashboard), /usr/share/doc/cefd (README.md, and docs/ as
 * docs/ next to it, as in the repository, so that the README's links resolve).
 * Modes are set here (0644, 0755 for programs and folders, 0640 for the conffile), not
 * taken from the build tree; Depends names the build's Node.js major only (nodejsDepends).
 *
 * Options: --out <dir> (default: the repository's build/), --version <v> (default:
 * package.json's), --fast (gzip -1 instead of xz: for tests). Prints the path of the .deb.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: opts } = parseArgs({ options: { out: { type: 'string' }, version: { type: 'string' }, fast: { type: 'boolean' } } });
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const version = opts.version ?? pkg.version;
const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
const outDir = opts.out ?? join(ROOT, 'build');

if (!existsSync(join(ROOT, 'dist', 'src', 'cli.js'))) throw new Error('dist/ is missing: run npm run build first');

const work = mkdtempSync(join(tmpdir(), 'cefd-deb-'));
const pkgRoot = join(work, 'root');
const at = (p) => join(pkgRoot, p);
const install = (from, to, mode) => {
  mkdirSync(dirname(at(to)), { recursive: true });
  cpSync(from, at(to));
  chmodSync(at(to), mode);
};

try {
  // The code: dist (JavaScript and source maps), and package.json (the version and "type": "module").
  const lib = 'usr/lib/cefd';
  cpSync(join(ROOT, 'dist'), at(`${lib}/dist`), { recursive: true });
  const shipped = { name: pkg.name, version, description: pkg.description, type: pkg.type, license: pkg.license, bin: pkg.bin, engines: pkg.engines, dependencies: pkg.dependencies };
  writeFileSync(at(`${lib}/package.json`), JSON.stringify(shipped, null, 2) + '\n');

  // Production dependencies, as npm resolved them here (no registry access at build time).
  const paths = productionPackages();
  for (const p of paths) {
    const rel = relative(ROOT, p);
    cpSync(p, at(`${lib}/${rel}`), {
      recursive: true,
      // Nested node_modules are listed on their own; better-sqlite3 needs only its
      // compiled module (build/Release/better_sqlite3.node), not its sources and objects.
      filter: (src) => {
        const r = relative(p, src);
        if (r === 'node_modules' || r.startsWith('node_modules/')) return false;
        if (!runtimeFile(r)) return false;
        if (rel.endsWith('better-sqlite3')) {
          if (r === 'deps' || r.startsWith('deps/') || r === 'src' || r.startsWith('src/')) return false;
          if (r.startsWith('build/') && r !== 'build/Release' && r !== 'build/Release/better_sqlite3.node') return false;
        }
        return true;
      },
    });
  }
  if (!existsSync(at(`${lib}/node_modules/better-sqlite3/build/Release/better_sqlite3.node`))) throw new Error('better-sqlite3 has no compiled module: run npm ci');

  // The command.
  mkdirSync(at('usr/bin'), { recursive: true });
  // V8's garbage collector on the thread that allocates (--single-threaded-gc): about 12 %
  // more events per CPU-second on 2 vCPUs, where parallel GC helpers only compete with the
  // decode workers; 4 MiB semi-spaces (--max-semi-space-size=4): the main thread's young
  // generation was the variable part of the peak RSS; no incremental marking
  // (--no-incremental-marking): the workers' results, freed by the main thread's GC, start a
  // marking of its old generation every 0.1 s or so that costs more than it frees
  // (docs/operations.md, docs/performance.md). CEFD_NODE_FLAGS, when set (even empty),
  // replaces them.
  writeFileSync(
    at('usr/bin/cefd'),
    '#!/bin/sh\n# cefd: the CEF / Kaspersky Security Center event collector (/usr/lib/cefd).\n' +
      '# Node/V8 flags: CEFD_NODE_FLAGS replaces the default (docs/performance.md).\n' +
      'exec /usr/bin/node ${CEFD_NODE_FLAGS---single-threaded-gc --max-semi-space-size=4 --no-incremental-marking} /usr/lib/cefd/dist/src/cli.js "$@"\n',
  );
  chmodSync(at('usr/bin/cefd'), 0o755);

  // systemd units.
  install(join(ROOT, 'deploy', 'cefd.service'), 'lib/systemd/system/cefd.service', 0o644);
  install(join(ROOT, 'deploy', 'cefd.socket'), 'lib/systemd/system/cefd.socket', 0o644);

  // The conffile: deploy/cefd.yaml with every default written out (cefd validate --print
  // applies the same defaults as run), so the operator sees what runs.
  const effective = JSON.parse(
    execFileSync(process.execPath, [join(ROOT, 'dist', 'src', 'cli.js'), 'validate', '--config', join(ROOT, 'deploy', 'cefd.yaml'), '--print'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => !/: OK \(/.test(l))
      .join('\n'),
  );
  delete effective.base_dir;
  const header = readFileSync(join(ROOT, 'deploy', 'cefd.yaml'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('#'))
    .slice(0, 3)
    .join('\n');
  let body = stringify(effective, { lineWidth: 0 }).replace(/^(\s*mode: )(\d+)$/gm, (_, k, v) => `${k}0o${Number(v).toString(8)}`);
  // Options the example does not use but an operator looks for, commented, a line each:
  // a TLS listener's cipher list and weak-pin override, and which KSC sources are trusted.
  const { MODERN_TLS12_CIPHERS } = await import(pathToFileURL(join(ROOT, 'dist', 'src', 'sources', 'tcp', 'tls-ciphers.js')).href);
  body = insertBefore(body, /^outputs:$/m, [
    '  # A TLS listener for KSC (docs/security.md):',
    '  # - name: ksc-tls',
    '  #   type: tls',
    '  #   port: 6514',
    '  #   normalizers: [ksc]',
    '  #   tls:',
    '  #     cert_file: /etc/cefd/tls/cefd.crt',
    '  #     key_file: /etc/cefd/tls/cefd.key',
    '  #     client_fingerprints: ["3F:A1:...:9C"]          # SHA-256 of the client certificate KSC presents',
    `  #     ciphers: "${MODERN_TLS12_CIPHERS}"   # TLS 1.2 suites (OpenSSL syntax); the default: forward-secret AEAD only`,
    '  #     allow_insecure_pinned_certificates: false     # true accepts an expired or weak pinned certificate (logged as a warning)',
  ]);
  body = insertBefore(body, /^  trusted_sources: \[\]$/m, [
    '  # Only events from these origins trigger response rules or update task runs (docs/ksc-trust.md); empty: none do:',
    '  # trusted_sources:',
    '  #   - { connection: main, listeners: [ksc-tls], client_fingerprints: ["3F:A1:...:9C"], cidrs: [10.0.0.5/32] }',
  ]);
  mkdirSync(at('etc/cefd'), { recursive: true });
  writeFileSync(
    at('etc/cefd/cefd.yaml'),
    `${header}\n#\n# Every option is written out with its default; the KSC export settings, allowlists,\n# TLS and HTTP outputs: docs in /usr/share/doc/cefd/docs.\n# After a change: sudo systemctl reload cefd\n# After a change to a listener: sudo systemctl restart cefd (a reload refuses it: both\n# listeners take their sockets from /lib/systemd/system/cefd.socket, which cefd cannot\n# reopen; the restart keeps them open). Their ports must match cefd.socket's.\n\n${body}`,
  );

  // Alert rules, dashboard, docs.
  install(join(ROOT, 'deploy', 'prometheus', 'cefd-alerts.yml'), 'usr/share/cefd/prometheus/cefd-alerts.yml', 0o644);
  install(join(ROOT, 'deploy', 'grafana', 'cefd.json'), 'usr/share/cefd/grafana/cefd.json', 0o644);
  cpSync(join(ROOT, 'docs'), at('usr/share/doc/cefd/docs'), { recursive: true });
  install(join(ROOT, 'README.md'), 'usr/share/doc/cefd/README.md', 0o644);
  mkdirSync(at('usr/share/doc/cefd'), { recursive: true });
  writeFileSync(at('usr/share/doc/cefd/copyright'), `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: cefd\nLicense: ${pkg.license}\n\nFiles: *\nLicense: ${pkg.license}\n\nFiles: usr/lib/cefd/node_modules/*\nComment: each module's licence is in its folder (package.json, LICENSE).\n`);

  // Control files.
  mkdirSync(at('DEBIAN'), { recursive: true });
  const kib = Math.ceil(Number(execFileSync('du', ['-sk', '--exclude=DEBIAN', pkgRoot], { encoding: 'utf8' }).split('\t')[0]));
  writeFileSync(
    at('DEBIAN/control'),
    [
      'Package: cefd',
      `Version: ${version}`,
      `Architecture: ${arch}`,
      'Maintainer: cefd maintainers <cefd@localhost>',
      `Installed-Size: ${kib}`,
      // The Node.js major this was built on (Debian 12's nodejs is 18; Node.js 20 from
      // NodeSource or Debian 13): see nodejsDepends() and docs/operations.md.
      `Depends: ${nodejsDepends()}, adduser | passwd`,
      'Section: admin',
      'Priority: optional',
      `Description: ${pkg.description}`,
      ' cefd receives syslog/CEF events (Kaspersky Security Center above all) over TCP, TLS',
      ' and UDP, normalizes them into typed JSON events and forwards them to files and HTTP',
      ' endpoints, with disk buffers, dead letters, Prometheus metrics and systemd socket',
      ' activation for restarts that refuse no connection.',
      '',
    ].join('\n'),
  );
  writeFileSync(at('DEBIAN/conffiles'), '/etc/cefd/cefd.yaml\n');
  for (const s of ['postinst', 'prerm', 'postrm']) install(join(ROOT, 'deploy', 'debian', s), `DEBIAN/${s}`, 0o755);

  // Modes from here, not from the build tree; then the conffile's: 0640, since it may hold
  // secrets (the postinst gives it to group cefd on first install).
  chmodSync(pkgRoot, 0o755);
  normaliseModes(pkgRoot);
  chmodSync(at('etc/cefd/cefd.yaml'), 0o640);

  mkdirSync(outDir, { recursive: true });
  const deb = join(outDir, `cefd_${version}_${arch}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', ...(opts.fast ? ['-Zgzip', '-z1'] : ['-Zxz']), '--build', pkgRoot, deb], { stdio: ['ignore', 'ignore', 'inherit'] });
  process.stdout.write(`${deb} (${Math.round(statSync(deb).size / 1024)} KiB)\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/**
 * Whether a file of a production dependency (path relative to its package folder) is needed
 * at run time. Left out: type declarations, source maps, Markdown other than licences, test
 * folders and tool configuration (about half of node_modules' bytes, mostly @azure/* of
 * tedious). Licence files stay (the copyright file points at them).
 */
function runtimeFile(r) {
  const parts = r.split('/');
  const base = parts[parts.length - 1];
  if (parts.some((d) => d === 'test' || d === 'tests' || d === '__tests__' || d === '.github')) return false;
  if (/^(licen[cs]e|copying|notice)/i.test(base)) return true;
  if (/\.(d\.ts|d\.mts|d\.cts|map|md|markdown)$/i.test(base)) return false;
  return !/^(\.npmignore|\.gitattributes|\.travis\.yml|\.editorconfig|\.eslintrc.*|\.prettierrc.*|\.nycrc.*)$/.test(base);
}

/** `lines` inserted before the line `at` matches (which must exist: the build fails otherwise). */
function insertBefore(text, where, lines) {
  const m = where.exec(text);
  if (m === null) throw new Error(`conffile: no line matching ${where}`);
  return `${text.slice(0, m.index)}${lines.join('\n')}\n${text.slice(m.index)}`;
}

/**
 * The folders of the production dependencies, from `npm ls --omit=dev --all --json --long`:
 * every package reached from package.json's `dependencies`, once. npm exits non-zero on any
 * problem it sees in node_modules, also one that does not touch what is packaged; when its
 * JSON parses, the build goes on and prints what npm reported (to stderr), ignoring:
 * extraneous packages (in node_modules, needed by nothing: not packaged, nor anything under
 * them) and invalid versions (a package whose version is outside the range asked for: it
 * is the one the tests ran with, and it is packaged). A production dependency that is
 * missing stops the build: the package would not run. Anything else (npm not running, no
 * JSON) stops it too.
 */
function productionPackages() {
  const r = spawnSync('npm', ['ls', '--omit=dev', '--all', '--json', '--long'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  let tree;
  try {
    tree = JSON.parse(r.stdout);
  } catch {
    throw new Error(`npm ls --omit=dev failed (exit ${r.status ?? r.signal}) without a dependency tree: ${r.error?.message ?? r.stderr}`);
  }
  const out = new Set();
  const missing = [];
  const walk = (deps, from) => {
    for (const [name, d] of Object.entries(deps ?? {})) {
      if (d.extraneous) continue;
      // npm marks a dependency it expected and did not find `missing`; an optional peer
      // dependency nobody installed (pg's pg-native) is an empty entry, and not a problem.
      if (d.missing) missing.push(`${name}@${d.required ?? '?'} (needed by ${from})`);
      if (d.missing || typeof d.path !== 'string') continue;
      // A package seen before is walked again: npm lists its dependencies at one of its
      // places only (the others are "deduped"), not necessarily the first.
      out.add(d.path);
      walk(d.dependencies, `${name}@${d.version}`);
    }
  };
  walk(tree.dependencies, pkg.name);
  if (missing.length > 0) throw new Error(`production dependencies missing from node_modules (run npm ci): ${missing.join(', ')}`);
  if (r.status !== 0 || (tree.problems?.length ?? 0) > 0) {
    const problems = tree.problems ?? [];
    process.stderr.write(`build.mjs: npm ls reported ${problems.length} problem(s) (exit ${r.status}); none is a missing production dependency, so they are ignored:\n${problems.slice(0, 10).map((p) => `  ${p}\n`).join('')}${problems.length > 10 ? `  ... ${problems.length - 10} more\n` : ''}`);
  }
  return [...out].filter((p) => p !== ROOT).sort();
}

/**
 * Package file modes independent of the build tree's umask and checkout (a umask 002 checkout
 * has -rw-rw-r-- files and drwxrwxr-x folders): folders 0755, files 0755 when any execute bit
 * is set (the wrapper, native modules, scripts), else 0644. Symbolic links are left as they
 * are (chmod would follow them). The conffile gets its own mode after this.
 */
function normaliseModes(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isSymbolicLink()) continue;
    if (e.isDirectory()) {
      chmodSync(p, 0o755);
      normaliseModes(p);
    } else {
      chmodSync(p, lstatSync(p).mode & 0o111 ? 0o755 : 0o644);
    }
  }
}

/**
 * The nodejs dependency: the Node.js major version this build ran on, from package.json's
 * engines minimum within it. better-sqlite3's native module is built for this major's ABI
 * (NODE_MODULE_VERSION: 115 for Node.js 20); another major cannot load it, and cefd would
 * exit 1 at every start. For Node.js 20 with engines ">=20.11": `nodejs (>= 20.11), nodejs (<< 21)`.
 */
function nodejsDepends() {
  const major = Number(process.versions.node.split('.')[0]);
  const min = /^>=\s*(\d+)(?:\.(\d+))?/.exec(pkg.engines?.node ?? '');
  const lower = min !== null && Number(min[1]) === major ? `${min[1]}${min[2] === undefined ? '' : `.${min[2]}`}` : String(major);
  if (min !== null && Number(min[1]) > major) throw new Error(`Node.js ${process.versions.node} is older than package.json's engines (${pkg.engines.node})`);
  return `nodejs (>= ${lower}), nodejs (<< ${major + 1})`;
}
