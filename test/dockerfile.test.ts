import t from 'tap';
import { dockerignore, parseDockerfile } from './support/dockerfile.ts';

/** The Dockerfile and .dockerignore readers behind test/image.test.ts, on sample text. */

t.test('instructions: continuations joined, comments dropped, each form parsed', async (t) => {
  const steps = parseDockerfile(`# syntax comment
FROM node:24-slim
ENV NODE_ENV=production \\
    # a comment inside a continuation
    GREETING="hello world" EMPTY=
ENV LEGACY some value
WORKDIR /app
COPY package.json package-lock.json ./
COPY --chown=node:node src ./src
RUN npm ci --omit=dev && npm cache clean --force
HEALTHCHECK --interval=10s CMD ["node", "-e", "1"]
CMD ["node", "src/main.ts"]
`);
  t.same(steps, [
    { kind: 'other', instruction: 'FROM', args: 'node:24-slim' },
    { kind: 'env', vars: { NODE_ENV: 'production', GREETING: 'hello world', EMPTY: '' } },
    { kind: 'env', vars: { LEGACY: 'some value' } },
    { kind: 'workdir', path: '/app' },
    { kind: 'copy', sources: ['package.json', 'package-lock.json'], dest: './' },
    { kind: 'copy', sources: ['src'], dest: './src' },
    { kind: 'run', command: 'npm ci --omit=dev && npm cache clean --force' },
    { kind: 'healthcheck', argv: ['node', '-e', '1'] },
    { kind: 'cmd', argv: ['node', 'src/main.ts'] },
  ]);
});

t.test('what it cannot replay faithfully, it refuses', async (t) => {
  t.throws(() => parseDockerfile('ADD x.tar.gz /x'), /ADD is not supported/);
  t.throws(() => parseDockerfile('COPY --from=build /out ./'), /unsupported COPY flag/);
  t.throws(() => parseDockerfile('CMD node src/main.ts'), /exec \(JSON array\) form/);
  t.throws(() => dockerignore('src/[ab].ts'), /unsupported/);
});

t.test('.dockerignore: directories, globs, exceptions, last rule wins', async (t) => {
  const ignored = dockerignore(`# comment
node_modules
/.git
*.log
docs/**/*.md
!docs/keep/README.md
test
!test/fixtures
`);
  const rows: Array<[string, boolean]> = [
    ['node_modules', true],
    ['node_modules/ioredis/package.json', true],
    ['src/node_modules', false], // a pattern is anchored at the context root
    ['.git/HEAD', true],
    ['debug.log', true],
    ['src/debug.log', false], // `*` does not cross a slash
    ['docs/a.md', true],
    ['docs/x/y/b.md', true],
    ['docs/keep/README.md', false],
    ['docs/a.txt', false],
    ['test/daemon.test.ts', true],
    ['test/fixtures/osrm/a.json', false],
    ['src/main.ts', false],
  ];
  for (const [path, want] of rows) t.equal(ignored(path), want, path);
});
