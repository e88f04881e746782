import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * OpenTelemetry traces, only with `OTEL_EXPORTER_OTLP_ENDPOINT` set. Unset, nothing here is loaded
 * but this file (the SDK comes in by dynamic import), and the app passes `undefined` down: the
 * request path makes no tracing call at all.
 *
 * Spans are made by hand: the proxy is a raw Node listener on undici's dispatch with a raw
 * handler, which the http and undici instrumentations would either miss or double, and patching
 * ioredis under ESM would need a loader hook at start. The spans:
 * - `<METHOD> <route>` (server): one per request, continuing the browser's W3C `traceparent` (a
 *   WebSocket handshake too, until it is answered: 101 or a refusal);
 * - `upstream <METHOD>` (client): one proxied exchange, or one of cloakroom's own calls (sign-in, a
 *   refresh's token call, link tokens: upstream/client.ts `request`), its context sent upstream as `traceparent`;
 * - `token refresh`: one refresh attempt (lock, upstream call, write back);
 * - `session store`: one guarded Redis operation of any store (src/store/redis-guard.ts).
 */
export interface Tracing {
  /** Runs `run` inside the request's server span; the span ends with the answer. */
  traceRequest(req: IncomingMessage, res: ServerResponse, name: string, run: () => void): void;
  /**
   * The same for a WebSocket handshake, which has no ServerResponse: `run` resolves to the
   * status the browser was answered with (101, or the refusal's), and the span ends then.
   */
  traceHandshake(req: IncomingMessage, name: string, run: () => Promise<number>): Promise<void>;
  /** A client span for one upstream exchange under the current span; writes its `traceparent` into `headers`. */
  startUpstream(method: string, headers: Record<string, string | string[]>): UpstreamSpan;
  /** Runs `run` inside a child span of the current one. */
  span<T>(name: string, run: () => Promise<T>): Promise<T>;
  /** Exports every finished span now (tests, shutdown). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

export interface UpstreamSpan {
  end(outcome: { status?: number; error?: unknown }): void;
}

let current: Tracing | undefined;

/** The tracing started in this process, if any (createApp's default when its deps name none). */
export function activeTracing(): Tracing | undefined {
  return current;
}

export interface TracingOptions {
  serviceName?: string;
}

/**
 * Starts the SDK: a NodeTracerProvider (async-local context, W3C propagator) with a batch
 * processor and the OTLP/HTTP JSON exporter, which reads the standard `OTEL_EXPORTER_OTLP_*` and
 * `OTEL_BSP_*` variables itself. Once per process.
 */
export async function startTracing(opts: TracingOptions = {}): Promise<Tracing> {
  if (current) return current;
  const api = await import('@opentelemetry/api');
  const { NodeTracerProvider } = await import('@opentelemetry/sdk-trace-node');
  const { BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');

  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME ?? opts.serviceName ?? 'cloakroom' }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register();
  const tracer = api.trace.getTracer('cloakroom');
  const { SpanKind, SpanStatusCode, context, propagation, trace, ROOT_CONTEXT } = api;

  const failed = (span: import('@opentelemetry/api').Span, err: unknown) => {
    // The error's name only: messages of upstream and Redis errors can quote what they were sent.
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.name : 'error' });
  };

  const serverSpan = (req: IncomingMessage, name: string) => {
    // The propagator takes a `traceparent` only in the W3C form; anything else starts a new trace.
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method ?? '' } }, parent);
    const answered = (status: number) => {
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    };
    return { span, answered, context: trace.setSpan(parent, span) };
  };

  const tracing: Tracing = {
    traceRequest(req, res, name, run) {
      const server = serverSpan(req, name);
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        server.answered(res.statusCode);
        if (!res.writableFinished) server.span.setAttribute('cloakroom.aborted', true);
        server.span.end();
      };
      res.once('finish', end);
      res.once('close', end);
      context.with(server.context, run);
    },
    traceHandshake(req, name, run) {
      const server = serverSpan(req, name);
      return context.with(server.context, run).then(
        (status) => {
          server.answered(status);
          server.span.end();
        },
        (err: unknown) => {
          failed(server.span, err);
          server.span.end();
        },
      );
    },
    startUpstream(method, headers) {
      const ctx = context.active();
      const span = tracer.startSpan(`upstream ${method}`, { kind: SpanKind.CLIENT, attributes: { 'http.request.method': method } }, ctx);
      propagation.inject(trace.setSpan(ctx, span), headers);
      return {
        end({ status, error }) {
          if (status !== undefined) span.setAttribute('http.response.status_code', status);
          if (error !== undefined) failed(span, error);
          span.end();
        },
      };
    },
    span(name, run) {
      return tracer.startActiveSpan(name, (span) =>
        run().then(
          (value) => {
            span.end();
            return value;
          },
          (err: unknown) => {
            failed(span, err);
            span.end();
            throw err;
          },
        ),
      );
    },
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      await provider.shutdown();
      if (current === tracing) current = undefined;
    },
  };
  current = tracing;
  return tracing;
}
