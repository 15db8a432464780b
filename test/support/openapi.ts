import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';
import { openApiDocument } from '../../src/http/openapi.ts';

/**
 * Checks an HTTP answer against the OpenAPI document (src/http/openapi.ts): its status is one the
 * operation lists, its content type one that status lists, its body valid against that schema (Ajv with
 * JSON Schema 2020-12, OpenAPI 3.1's dialect, strict, with formats), and its required headers there.
 * test/support/daemon.ts runs every answer of every daemon test through it, so the document cannot
 * drift from what the daemon does without a test failing.
 *
 * A path the document does not list must answer its 404 (NotFound), and a method a path does not list
 * its 405 (MethodNotAllowed, with an Allow header naming exactly the listed methods): the document says
 * so in its description, and this holds the daemon to it.
 */

type Doc = Record<string, any>;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const DOC_ID = 'cabtrack-openapi.json';

export class OpenApiMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OpenApiMismatch';
  }
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

/** JSON Pointer escaping of one token (RFC 6901). */
const token = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

export class ResponseValidator {
  readonly #doc: Doc;
  readonly #ajv: Ajv2020;
  readonly #compiled = new Map<string, ValidateFunction>();
  /** Every object of the document to its JSON Pointer, to name where a failing keyword is. */
  readonly #where: Map<object, string>;
  readonly #templates: Array<{ template: string; re: RegExp; literals: number }>;

  constructor(doc: Doc) {
    this.#doc = doc;
    // verbose: each error carries the schema object it comes from, which #where locates in the document.
    this.#ajv = new Ajv2020({ strict: true, allErrors: true, verbose: true });
    this.#where = pointers(doc);
    formats.default(this.#ajv);
    // The whole document under one id, so the schemas' `#/components/schemas/...` references resolve.
    // Its top-level fields are declared as keywords that validate nothing, so strict mode accepts the
    // root; the schemas themselves are compiled strictly (an unknown keyword, a typo such as
    // `minimun`, throws).
    this.#ajv.addVocabulary(Object.keys(doc));
    this.#ajv.addSchema(doc, DOC_ID);
    this.#templates = Object.keys(doc['paths'] as object).map((template) => {
      const parts = template.split('/');
      // A parameter may be empty (`/v1/drivers/`): the route is the same, and its 400 names the parameter.
      const re = parts
        .map((p) => (/^\{[^}]+\}$/.test(p) ? '[^/]*' : p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        .join('/');
      return {
        template,
        re: new RegExp(`^${re}$`),
        literals: parts.filter((p) => !p.startsWith('{')).length,
      };
    });
  }

  /** The document's path template for a request path; concrete paths win over templated ones. */
  pathTemplate(pathname: string): string | null {
    let best: { template: string; literals: number } | null = null;
    for (const t of this.#templates) {
      if (t.re.test(pathname) && (best === null || t.literals > best.literals)) best = t;
    }
    return best?.template ?? null;
  }

  /** Throws an OpenApiMismatch naming the route and the schema path when the answer does not fit. */
  check(method: string, target: string, answer: Answer): void {
    const pathname = new URL(target, 'http://cabtrack').pathname;
    const route = `${method} ${pathname}`;
    const fail = (what: string): never => {
      throw new OpenApiMismatch(
        `${route} answered ${answer.status} ${answer.headers.get('content-type') ?? ''}: ${what}\n` +
          `  body: ${answer.text.slice(0, 500)}`,
      );
    };
    const template = this.pathTemplate(pathname);
    if (template === null) {
      if (answer.status !== 404) fail('the path is not in the document, so the answer must be its 404');
      this.#checkResponse(fail, '#/components/responses/NotFound', method, answer);
      return;
    }
    const item = this.#doc['paths'][template] as Doc;
    const listed = METHODS.filter((m) => item[m] !== undefined);
    const op = item[method.toLowerCase()] as Doc | undefined;
    if (op === undefined) {
      if (answer.status !== 405) fail(`${template} does not list ${method}, so the answer must be its 405`);
      const allow = (answer.headers.get('allow') ?? '').split(/,\s*/).map((m) => m.toLowerCase());
      if ([...allow].sort().join() !== [...listed].sort().join()) {
        fail(`Allow: ${answer.headers.get('allow')} is not the methods the document lists (${listed})`);
      }
      this.#checkResponse(fail, '#/components/responses/MethodNotAllowed', method, answer);
      return;
    }
    const base = `#/paths/${token(template)}/${method.toLowerCase()}/responses`;
    const status = String(answer.status);
    const responses = op['responses'] as Doc;
    const key = status in responses ? status : `${status[0]}XX` in responses ? `${status[0]}XX` : 'default';
    if (!(key in responses)) {
      fail(`status ${status} is not in ${template} ${method} (${Object.keys(responses).join(', ')})`);
    }
    this.#checkResponse(fail, `${base}/${token(key)}`, method, answer);
  }

  /** Compiles the schema of every content type of one documented response (a broken one throws). */
  schemaFor(template: string, method: string, status: string): ValidateFunction[] {
    const { at, res } = this.#response(`#/paths/${token(template)}/${method}/responses/${token(status)}`);
    return Object.keys((res['content'] ?? {}) as Doc).map((type) =>
      this.#validator(`${at}/content/${token(type)}/schema`),
    );
  }

  /**
   * Why a value does not match one of the document's schemas (components/schemas), or null when it does:
   * for what is not a whole answer, such as a stream's frames.
   */
  mismatch(schema: string, value: unknown): string | null {
    const at = `#/components/schemas/${token(schema)}`;
    const validate = this.#validator(at);
    return validate(value) ? null : `not a ${schema} (${at}):\n${this.#describe(validate.errors ?? [])}`;
  }

  /** A response, through its reference to a reusable one (components/responses) if it is one. */
  #response(pointer: string): { at: string; res: Doc } {
    let at = pointer;
    let res = this.#resolve(at);
    while (typeof res['$ref'] === 'string') {
      at = res['$ref'];
      res = this.#resolve(at);
    }
    return { at, res };
  }

  #checkResponse(fail: (what: string) => never, pointer: string, method: string, answer: Answer): void {
    const { at, res } = this.#response(pointer);
    for (const [name, header] of Object.entries((res['headers'] ?? {}) as Doc)) {
      if (header['required'] === true && !answer.headers.has(name)) fail(`header ${name} missing (${at})`);
    }
    const content = res['content'] as Doc | undefined;
    if (method === 'HEAD') return; // No body to check.
    if (content === undefined) {
      if (answer.text !== '') fail(`${at} has no content, but a body came`);
      return;
    }
    const type = (answer.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (!(type in content)) fail(`content type ${type} is not in ${at} (${Object.keys(content).join(', ')})`);
    let body: unknown = answer.text;
    if (type === 'application/json' || type.endsWith('+json')) {
      try {
        body = JSON.parse(answer.text);
      } catch {
        fail(`the body is not JSON (${at})`);
      }
    }
    const schemaAt = `${at}/content/${token(type)}/schema`;
    const validate = this.#validator(schemaAt);
    if (!validate(body))
      fail(`the body does not match ${schemaAt}:\n${this.#describe(validate.errors ?? [])}`);
  }

  #validator(pointer: string): ValidateFunction {
    let v = this.#compiled.get(pointer);
    if (v === undefined) {
      v = this.#ajv.compile({ $ref: `${DOC_ID}${pointer}` });
      this.#compiled.set(pointer, v);
    }
    return v;
  }

  #resolve(pointer: string): Doc {
    let node: any = this.#doc;
    for (const raw of pointer.replace(/^#\//, '').split('/')) {
      node = node?.[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
    }
    if (node === undefined) throw new Error(`nothing at ${pointer} in the OpenAPI document`);
    return node as Doc;
  }

  /** Each error with the document's path to the keyword that failed (Ajv's own is relative to a $ref). */
  #describe(errors: ErrorObject[]): string {
    return errors
      .slice(0, 10)
      .map((e) => {
        const at = this.#where.get(e.parentSchema as object);
        const schemaPath = at === undefined ? e.schemaPath : `${at}/${e.keyword}`;
        return `  ${e.instancePath || '(the body)'} ${e.message ?? ''} ${JSON.stringify(e.params)} [${schemaPath}]`;
      })
      .join('\n');
  }
}

function pointers(doc: Doc): Map<object, string> {
  const out = new Map<object, string>();
  const walk = (node: unknown, at: string): void => {
    if (typeof node !== 'object' || node === null || out.has(node)) return;
    out.set(node, at);
    for (const [k, v] of Object.entries(node)) walk(v, `${at}/${token(k)}`);
  };
  walk(doc, '#');
  return out;
}

/** The daemon's own document: what test/support/daemon.ts checks every answer against. */
export const daemonResponses = new ResponseValidator(openApiDocument);
