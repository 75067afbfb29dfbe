#!/usr/bin/env -S node --single-threaded-gc --max-semi-space-size=4 --no-incremental-marking
/**
 * The `cefd` command line: flags and exit codes only; the work is in src/commands/ and
 * src/daemon.ts. Exit codes: 0 ok, 1 runtime failure, 64 usage, 78 config; `cefd parse`
 * exits 1 when a frame failed and 2 on usage or I/O errors.
 */
import { Command, CommanderError, Option } from 'commander';
import { existsSync } from 'node:fs';
import { encodeProblemsText, parseInputs, openInputs } from './commands/parse.js';
import { DEFAULT_MAX_FRAME_BYTES } from './codecs/framing/framer.js';
import { loadChain, type Normalizer } from './pipeline/normalize.js';
import { isKnownZone } from './time.js';
import { ENCODER_NAMES, isEncoderName } from './codecs/encoders/registry.js';
import { compileRoutes } from './pipeline/router.js';
import { registerKscCommands } from './ksc/cli.js';
import { registerSqlCommands } from './sources/sql/cli.js';
import { registerConsoleCommands } from './console/cli.js';
import { EXIT } from './errors.js';
import { StartupSignals } from './startup-signals.js';
import { VERSION } from './version.js';


/** A positive integer option; `exitCode` is the command's usage exit code (`cefd parse`: 2). */
function intArg(name: string, exitCode: number = EXIT.usage) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new CommanderError(exitCode, 'cefd.usage', `${name} must be a positive integer, got ${v}`);
    return n;
  };
}


export function buildProgram(): Command {
  const program = new Command();
  program
    .name('cefd')
    .description('Collects CEF and Kaspersky Security Center events over syslog and turns them into typed events.')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('parse')
    .description('Parse files (or stdin) of syslog/CEF frames and print one JSON event per frame')
    .argument('[files...]', 'input files; none or - reads stdin')
    .option('--raw', 'include the frame text as "raw"')
    .option('--pretty', 'indent the JSON')
    .option('--no-normalize', 'skip the normalizers')
    .option('--normalizer <name-or-path...>', 'normalizer chain, in order (default: ksc)')
    .option('--timezone <zone>', 'zone for times without one (IANA name)', 'UTC')
    // Checked in the action (not with .choices) so that the message lists the encoders.
    .option('--encoding <codec>', `print what an output with this encoding gets (${ENCODER_NAMES.join(', ')})`, 'native')
    .option('--only-fields <paths>', 'keep only these fields, as an output\'s encoding.only_fields (comma-separated dotted paths)')
    .option('--except-fields <paths>', 'drop these fields, as an output\'s encoding.except_fields (comma-separated dotted paths)')
    .addOption(new Option('--typed <which>', 'native event: cef.typed holds the converted values that differ from the text, or all (config event.typed)').choices(['changed', 'all']).default('changed'))
    .addOption(new Option('--custom-fields <how>', 'native event: custom fields folded into cef.custom, or as pairs in cef.extensions (config event.custom_fields)').choices(['folded', 'pairs']).default('folded'))
    .addOption(new Option('--ksc <object>', 'native event: the lean ksc object, or the full one with labels (config event.ksc)').choices(['lean', 'full']).default('lean'))
    .addOption(new Option('--syslog-timestamp <when>', 'native event: syslog.timestamp only when it differs from timestamp, or always (config event.syslog_timestamp)').choices(['changed', 'always']).default('changed'))
    .addOption(new Option('--max-frame-bytes <n>', 'largest frame').argParser(intArg('--max-frame-bytes', 2)).default(DEFAULT_MAX_FRAME_BYTES))
    .exitOverride()
    .action(async (files: string[], o: { raw?: boolean; pretty?: boolean; normalize: boolean; normalizer?: string[]; timezone: string; maxFrameBytes: number; encoding: string; onlyFields?: string; exceptFields?: string; typed: 'changed' | 'all'; customFields: 'folded' | 'pairs'; ksc: 'lean' | 'full'; syslogTimestamp: 'changed' | 'always' }) => {
      if (!isKnownZone(o.timezone)) throw new CommanderError(2, 'cefd.usage', `error: unknown time zone ${o.timezone}`);
      if (!isEncoderName(o.encoding)) throw new CommanderError(2, 'cefd.usage', `error: unknown encoding ${o.encoding} (known: ${ENCODER_NAMES.join(', ')})`);
      const list = (v: string | undefined) => (v === undefined ? [] : v.split(',').map((x) => x.trim()).filter((x) => x !== ''));
      const event = { typed: o.typed, custom_fields: o.customFields, ksc: o.ksc, syslog_timestamp: o.syslogTimestamp };
      // The same compilation an output's `encoding` section and the config's `event` section go through (router.ts).
      let encoder;
      try {
        encoder = compileRoutes([{ encoding: { codec: o.encoding, only_fields: list(o.onlyFields), except_fields: list(o.exceptFields) } }], event).encoders[0]!;
      } catch (e) {
        // Field options the encoding refuses (registry.ts fieldOptionsProblem), as validate refuses them.
        throw new CommanderError(2, 'cefd.usage', `error: --encoding ${o.encoding}: ${(e as Error).message}`);
      }
      let chain: Normalizer[] = [];
      try {
        chain = o.normalize ? await loadChain(o.normalizer ?? ['ksc'], process.cwd(), { fileIsPath: true }) : [];
      } catch (e) {
        throw new CommanderError(2, 'cefd.usage', `error: ${(e as Error).message}`);
      }
      for (const f of files) {
        if (f !== '-' && !existsSync(f)) throw new CommanderError(2, 'cefd.io', `error: cannot read ${f}: no such file`);
      }
      let stats;
      try {
        stats = await parseInputs(openInputs(files), process.stdout, {
          keepRaw: o.raw === true,
          pretty: o.pretty === true,
          normalizers: chain,
          defaultZone: o.timezone,
          maxFrameBytes: o.maxFrameBytes,
          encoder,
        });
      } catch (e) {
        throw new CommanderError(2, 'cefd.io', `error: ${(e as Error).message}`);
      }
      // What the encoder dropped, cut or moved: the preview shows what an output loses too.
      process.stderr.write(encodeProblemsText(encoder.problems));
      process.exitCode = stats.failed > 0 ? 1 : 0;
    });

  program
    .command('run')
    .description('Run the collector daemon (built-in defaults when no --config is given)')
    .option('-c, --config <file>', 'YAML configuration file')
    .action(async (o: { config?: string }) => {
      // Held from now on (loading the daemon's modules takes a while): src/startup-signals.ts.
      const early = new StartupSignals();
      const { runDaemon } = await import('./daemon.js');
      process.exitCode = await runDaemon(o.config, early);
    });

  program
    .command('validate')
    .description('Check a configuration file with the same code as run; exit 0 or 78')
    .option('-c, --config <file>', 'YAML configuration file (omitted: the built-in defaults)')
    .option('--print', 'print the effective configuration (defaults applied, secrets redacted)')
    .action(async (o: { config?: string; print?: boolean }) => {
      const { loadConfig, ConfigError, redactConfig } = await import('./config/load.js');
      const { checkNormalizers } = await import('./config/normalizers.js');
      try {
        const c = loadConfig(o.config);
        await checkNormalizers(c, o.config);
        if (o.print) process.stdout.write(JSON.stringify(redactConfig(c), null, 2) + '\n');
        process.stdout.write(`${o.config ?? 'built-in configuration'}: OK (${c.listeners.length} listeners, ${c.sql_sources.length > 0 ? `${c.sql_sources.length} sql sources, ` : ''}${c.outputs.length} outputs)\n`);
        process.exitCode = EXIT.ok;
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        process.stderr.write(`${e.message}\n`);
        process.exitCode = EXIT.config;
      }
    });

  const buffers = program
    .command('buffers')
    .description('List the disk buffers in state_dir: which output uses each, undelivered records and bytes (orphans: outputs no longer configured)')
    .option('-c, --config <file>', 'YAML configuration file (omitted: the built-in defaults)')
    .option('--json', 'one JSON object per buffer')
    .action(async (o: { config?: string; json?: boolean }) => {
      const { buffersList } = await import('./commands/buffers.js');
      process.exitCode = await buffersList(o.config, o.json === true, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
    });
  buffers
    .command('drop')
    .description('Delete the disk buffer and spill file of an output the configuration no longer uses (refused while cefd runs)')
    .argument('<output>', 'the output name, as cefd buffers lists it')
    .option('-c, --config <file>', 'YAML configuration file (omitted: the built-in defaults)')
    .action(async (name: string, o: { config?: string }) => {
      const { buffersDrop } = await import('./commands/buffers.js');
      process.exitCode = await buffersDrop(o.config ?? buffers.opts<{ config?: string }>().config, name, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
    });

  registerKscCommands(program);
  registerSqlCommands(program);
  registerConsoleCommands(program);

  program
    .command('config-doc')
    .description('Print every configuration option as a Markdown table')
    .action(async () => {
      const { configDoc } = await import('./config/doc.js');
      process.stdout.write(configDoc());
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  // A closed pipe (`cefd parse ... | head`) ends the command quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      if (e.code.startsWith('cefd.')) process.stderr.write(e.message.endsWith('\n') ? e.message : `${e.message}\n`);
      // Usage errors of `parse` exit 2 (its documented contract); everything else 64.
      // Commander reports its own usage errors (unknown option, missing argument) with
      // exit code 1; cefd's own errors (`cefd.*`) carry the exit code they mean, 1 for a
      // failure (`cefd tap` refused or unable to connect).
      const sub = argv[2];
      if (e.exitCode === 2 || sub === 'parse') return e.code.startsWith('cefd.') ? e.exitCode : 2;
      return e.exitCode === 1 && !e.code.startsWith('cefd.') ? EXIT.usage : e.exitCode;
    }
    process.stderr.write(`cefd: ${(e as Error).stack ?? String(e)}\n`);
    return EXIT.failure;
  } finally {
    // Run as root on the service's state folder: what the command made there goes to its owner.
    (await import('./state-dir.js')).giveStateDirsToOwner();
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`cefd: ${String(e)}\n`);
    process.exitCode = EXIT.failure;
  },
);
