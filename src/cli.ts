#!/usr/bin/env node
/**
 * `cabtrack <command>`: start (the daemon, src/main.ts), simulate (a fleet, src/sim/), demo (both).
 * Each command loads only its own modules, so `start` costs nothing more than `node src/main.ts`.
 */
const USAGE = `usage: cabtrack <command> [options]

  start      run the daemon (configured by CABTRACK_* variables, see README.md)
  simulate   drive a simulated fleet against a running daemon (cabtrack simulate --help)
  demo       start the daemon and a simulated fleet of 200 cars together, until Ctrl-C
`;

const [command, ...args] = process.argv.slice(2);

switch (command) {
  case 'start':
    // The cluster forks workers with this same command line, so they come through here too.
    await import('./main.ts');
    break;
  case 'simulate':
    process.exitCode = await simulate(args);
    break;
  case 'demo':
    process.exitCode = await demo(args);
    break;
  case undefined:
  case 'help':
  case '--help':
  case '-h':
    process.stdout.write(USAGE);
    break;
  default:
    process.stderr.write(`cabtrack: unknown command ${JSON.stringify(command)}\n${USAGE}`);
    process.exitCode = 2;
}

async function simulate(argv: string[]): Promise<number> {
  const { OptionError, parseSimulateArgs, SIMULATE_USAGE } = await import('./sim/options.ts');
  const { runSimulation } = await import('./sim/run.ts');
  let cmd: ReturnType<typeof parseSimulateArgs>;
  try {
    cmd = parseSimulateArgs(argv, process.env);
  } catch (err) {
    if (!(err instanceof OptionError)) throw err;
    process.stderr.write(`cabtrack simulate: ${err.message}\n`);
    return 2;
  }
  if (cmd.help) {
    process.stdout.write(SIMULATE_USAGE);
    return 0;
  }
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  const out = cmd.json ? process.stderr : process.stdout;
  try {
    const report = await runSimulation({
      ...cmd.run,
      print: (line) => out.write(`${line}\n`),
      signal: stop.signal,
    });
    if (cmd.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`cabtrack simulate: ${(err as Error).message}\n`);
    return 1;
  }
}

async function demo(argv: string[]): Promise<number> {
  const { DEMO_USAGE, OptionError, parseDemoArgs } = await import('./sim/options.ts');
  const { runDemo } = await import('./sim/demo.ts');
  let cmd: ReturnType<typeof parseDemoArgs>;
  try {
    cmd = parseDemoArgs(argv);
  } catch (err) {
    if (!(err instanceof OptionError)) throw err;
    process.stderr.write(`cabtrack demo: ${err.message}\n`);
    return 2;
  }
  if (cmd.help) {
    process.stdout.write(DEMO_USAGE);
    return 0;
  }
  return runDemo(cmd);
}
