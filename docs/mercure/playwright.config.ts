// Runs Mercure's conformance suite (its `mercure.spec.ts`, fetched by conformance.sh) against
// a Herald at BASE_URL in one Chromium, the browser Herald's own tests use.
import type { PlaywrightTestConfig } from '@playwright/test';

// The suite checks that the hub keeps a publisher's id when CUSTOM_ID is set.
process.env.CUSTOM_ID = process.env.CUSTOM_ID ?? '1';

const config: PlaywrightTestConfig = {
  testDir: '.',
  timeout: 10 * 1000,
  expect: { timeout: 5000 },
  retries: 0,
  workers: 1,
  reporter: 'list',
  use: {
    baseURL: process.env.BASE_URL ?? 'http://127.0.0.1:18090/.well-known/mercure',
    ignoreHTTPSErrors: true,
  },
  projects: [
    {
      name: 'chromium',
      use: {
        browserName: 'chromium',
        launchOptions: {
          executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
          args: ['--no-sandbox'],
        },
      },
    },
  ],
};

export default config;
