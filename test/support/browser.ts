import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';

/**
 * Headless Chromium for the browser tests: Debian's `chromium` package (`.ci/run` installs it), driven by
 * playwright-core through its executablePath (playwright's own browser download cannot run here). No
 * Chromium is a failure that says what to install, not a skip: CI must run these tests.
 */

export const CHROMIUM = process.env['CABTRACK_CHROMIUM'] ?? '/usr/bin/chromium';

/**
 * Without the background-networking flags Chromium reaches for Google's services at start, and on a
 * machine that refuses those connections it keeps trying, many at a time.
 */
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `the browser tests need Chromium at ${CHROMIUM}: install Debian's package (apt-get install -y ` +
        'chromium; .ci/run does), or set CABTRACK_CHROMIUM to its path',
    );
  }
  // A fresh profile each launch (playwright makes a temporary --user-data-dir).
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}

/** What a page said was wrong: console errors and uncaught exceptions, as the console shows them. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  return errors;
}

/** Polls a condition in Node (which may ask the page) until it holds. */
export async function until<T>(
  what: string,
  probe: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T = await probe();
  while (!ok(last)) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
    last = await probe();
  }
  return last;
}
