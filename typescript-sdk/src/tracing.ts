/**
 * A state's trace context while its node runs: the claim's W3C `traceparent` made the active span.
 *
 * With `@opentelemetry/api` installed (an optional peer dependency) and an OpenTelemetry SDK set up
 * by the application (it registers the context manager), the spans a node opens itself, or through
 * instrumented libraries, become children of the state's `execute` span in the run's trace, when the
 * server exports traces. Without the package, or without a traceparent, the node simply runs; the
 * package is looked for once, at the first state that carries a traceparent.
 *
 * @example
 * ```ts
 * const outcome = await inStateTraceContext(claim.traceparent, () => runNode(node, inputs, secrets, signal));
 * ```
 * @module
 */
type OtelApi = typeof import('@opentelemetry/api');

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
let otelApi: Promise<OtelApi | undefined> | undefined;

function loadOtelApi(): Promise<OtelApi | undefined> {
  otelApi ??= import('@opentelemetry/api').then(
    (api) => api,
    () => undefined, // not installed: tracing is simply off
  );
  return otelApi;
}

/** Run `work` with the span of `traceparent` active (or as it is, when there is nothing to attach to). */
export async function inStateTraceContext<T>(traceparent: string | null | undefined, work: () => Promise<T>): Promise<T> {
  const match = TRACEPARENT.exec(traceparent ?? '');
  if (!match) return work();
  const api = await loadOtelApi();
  if (!api) return work();
  const [, traceId, spanId, flags] = match;
  const active = api.trace.setSpanContext(api.context.active(), {
    traceId: traceId as string,
    spanId: spanId as string,
    traceFlags: parseInt(flags as string, 16),
    isRemote: true,
  });
  return api.context.with(active, work);
}
