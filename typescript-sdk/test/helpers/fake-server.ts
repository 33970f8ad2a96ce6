/**
 * A scripted state manager on a local port, for faults a real server cannot be made to show
 * (yet): it hands out the states it is given and answers each endpoint from a list of replies.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';

export interface Reply {
  status: number;
  body: unknown;
}

export interface Call {
  method: string;
  path: string;
  body: unknown;
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
    const path = (request.url ?? '').split('?')[0]!.replace(/\/+$/, '');
    this.calls.push({ method: request.method ?? '', path, body: text ? JSON.parse(text) : undefined });
    const reply = this.reply(path);
    response.writeHead(reply.status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(reply.body));
  }

  private reply(path: string): Reply {
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
