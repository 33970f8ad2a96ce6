/**
 * A scripted state manager on a local port, for faults a real server cannot be made to show
 * (yet): it hands out the states it is given and answers each endpoint from a list of replies.
 * A reply may also be broken on the wire: a corrupt or truncated body, a reset connection, or
 * no answer at all.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';

export interface Reply {
  /** Default 200. */
  status?: number;
  /** Sent as JSON (default `{}`). */
  body?: unknown;
  /** Sent as the body instead of `body` as JSON. */
  raw?: string | Buffer;
  headers?: Record<string, string>;
  /** Announce more bytes than are sent, then close the connection. */
  truncated?: boolean;
  /** Reset the connection (TCP RST) instead of answering. */
  reset?: boolean;
  /** Never answer: send nothing, or only the status line and headers. The connection stays open until the server stops. */
  stall?: 'silent' | 'after-headers';
}

export interface Call {
  method: string;
  path: string;
  /** JSON bodies decoded; others (a live stream's JSON lines) as text. */
  body: unknown;
  query: Record<string, string>;
}

export class FakeStateManager {
  readonly calls: Call[] = [];
  /** Replies served, in order, to the calls whose path ends with the key (e.g. `secrets`). */
  readonly faults = new Map<string, Reply[]>();
  /** The reply to every call whose path ends with the key, once its `faults` are used up. */
  readonly standing = new Map<string, Reply>();
  private readonly ready: { state_id: string; node_name: string; inputs: Record<string, string> }[] = [];
  private server: Server | undefined;
  private ids = 0;
  url = '';

  addState(nodeName: string, inputs: Record<string, string> = {}): string {
    const stateId = `s${this.ids++}`;
    this.ready.push({ state_id: stateId, node_name: nodeName, inputs });
    return stateId;
  }

  callsTo(stateId: string, endpoint: string): Call[] {
    return this.calls.filter((call) => call.path.endsWith(`/state/${stateId}/${endpoint}`));
  }

  async start(): Promise<void> {
    this.server = createServer((request, response) => void this.handle(request, response));
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    const address = this.server.address();
    if (address === null || typeof address !== 'object') throw new Error('fake server has no port');
    this.url = `http://127.0.0.1:${address.port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((ok) => this.server?.close(ok));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const [target = '', search = ''] = (request.url ?? '').split('?');
    const path = target.replace(/\/+$/, '');
    const query = Object.fromEntries(new URLSearchParams(search));
    this.calls.push({ method: request.method ?? '', path, body: text ? decoded(text) : undefined, query });
    this.send(response, this.reply(path));
  }

  private send(response: ServerResponse, reply: Reply): void {
    if (reply.reset) {
      response.socket?.resetAndDestroy();
      return;
    }
    if (reply.stall === 'silent') return;
    const payload = Buffer.from(reply.raw ?? JSON.stringify(reply.body ?? {}));
    const length = payload.length + (reply.truncated ? 100 : 0);
    response.writeHead(reply.status ?? 200, { 'content-type': 'application/json', 'content-length': String(length), ...reply.headers });
    if (reply.stall === 'after-headers') {
      response.flushHeaders();
      return;
    }
    if (reply.truncated) response.write(payload, () => response.socket?.destroy());
    else response.end(payload);
  }

  private reply(path: string): Reply {
    // A server that predates the batch endpoint: the runtime reports each result on its own, to
    // the `executed` route whose faults the tests script.
    if (path.endsWith('/states/executed')) return { status: 404, body: { detail: 'Not Found' } };
    const endpoint = path.split('/').at(-1) ?? '';
    const fault = this.faults.get(endpoint)?.shift();
    if (fault) return fault;
    const standing = this.standing.get(endpoint);
    if (standing) return standing;
    if (endpoint === 'nodes') return { status: 200, body: { registered_nodes: [] } };
    if (endpoint === 'enqueue') {
      const states = this.ready.splice(0).map((state) => ({ ...state, lease_id: `lease-${state.state_id}` }));
      return { status: 200, body: { count: states.length, status: 'QUEUED', states } };
    }
    if (endpoint === 'secrets') return { status: 200, body: { secrets: {} } };
    return { status: 200, body: { status: endpoint.toUpperCase() } };
  }
}

function decoded(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
