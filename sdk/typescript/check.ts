// Type-checked against the generated SDK (`npm run typecheck`), never run: it proves that the
// operations and fields of the OpenAPI document reach TypeScript with their real types, not
// `unknown`. Each `@ts-expect-error` is a misuse that must stay a compile error.
import { createClient } from './src/client/client';
import {
  cancelRun,
  cancelRuns,
  createRun,
  deleteRun,
  forkRun,
  getRun,
  listRuns,
  purgeRuns,
  resumeRun,
  retryRun,
  type DeliveryStatus,
  type InterruptPublic,
  type RetryRunError,
  type RunPublic,
  type RunStatus,
  type RunSummaryPublic,
} from './src/client';

// `same<T>()(value)` compiles only when the value's type is exactly T (not any, not wider).
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same =
  <T>() =>
  <V>(value: V & (Same<V, T> extends true ? unknown : never)): V =>
    value;

const client = createClient({ baseUrl: 'http://127.0.0.1:8000', auth: () => 'a-token' });

export async function tour(): Promise<string[]> {
  const seen: string[] = [];

  const created = await createRun({
    client,
    path: { name: 'approval' },
    query: { wait: true },
    headers: { 'idempotency-key': 'tour-1' },
    body: {
      input: { topic: 'sdks' },
      webhook: 'https://example.com/hooks/graphflow',
      max_concurrent: 4,
      timeout_seconds: 600,
      queue_timeout_seconds: 60,
      metadata: { ticket: 'GF-12', priority: 2 },
      tags: ['nightly', 'sdk'],
    },
    throwOnError: true,
  });
  const run: RunPublic = created.data;
  same<RunStatus>()(run.status);
  same<string | null | undefined>()(run.graph_version);
  same<number | null | undefined>()(run.timeout_seconds);
  same<string | null | undefined>()(run.deadline_at);
  same<string[] | undefined>()(run.tags);
  same<Record<string, unknown> | undefined>()(run.metadata);
  const waiting: InterruptPublic[] = run.interrupts ?? [];
  for (const interrupt of waiting) {
    seen.push(`${interrupt.id} ${interrupt.node} ${interrupt.node_run_id}`);
  }
  for (const delivery of run.webhook?.deliveries ?? []) {
    same<DeliveryStatus>()(delivery.status);
    same<number | null>()(delivery.last_status_code);
    seen.push(`${delivery.event}: ${delivery.status} after ${delivery.attempts}`);
  }
  for (const node of run.nodes) {
    seen.push(`${node.node} ${node.status} ${node.duration_ms ?? '-'}`);
  }

  const fetched = await getRun({ client, path: { run_id: run.id }, throwOnError: true });
  same<RunStatus>()(fetched.data.status);

  const page = await listRuns({
    client,
    query: {
      graph: 'approval',
      status: 'interrupted',
      tag: ['nightly', 'sdk'],
      created_after: '2026-01-01T00:00:00Z',
      created_before: '2027-01-01T00:00:00Z',
      limit: 10,
      cursor: null,
    },
    throwOnError: true,
  });
  const items: RunSummaryPublic[] = page.data.items;
  same<string | null>()(page.data.next_cursor);
  for (const item of items) {
    seen.push(`${item.id} ${item.graph_version ?? '?'} ${(item.tags ?? []).join(',')}`);
  }

  // A resume body is one value for the one waiting node, or values by interrupt id.
  const byId = await resumeRun({
    client,
    path: { run_id: run.id },
    body: { values: { [waiting[0]?.id ?? '1']: { approved: true } } },
    throwOnError: true,
  });
  same<RunStatus>()(byId.data.status);
  await resumeRun({ client, path: { run_id: run.id }, body: { value: null }, throwOnError: true });

  // Without throwOnError the answer is data or a typed error, never both.
  const retried = await retryRun({ client, path: { run_id: run.id } });
  if (retried.error !== undefined) {
    const error: RetryRunError = retried.error; // ErrorPublic, or 422's HTTPValidationError
    seen.push(`retry refused (${retried.response.status}): ${JSON.stringify(error.detail)}`);
  } else {
    same<RunStatus>()(retried.data.status);
  }

  const reviewed = run.nodes.find((node) => node.node === 'review');
  const forked = await forkRun({
    client,
    path: { run_id: run.id },
    body: { from_node_run: reviewed?.id ?? '1', input_patch: { topic: 'forks' } },
    throwOnError: true,
  });
  same<Record<string, unknown>>()(forked.data.input);

  const cancelled = await cancelRun({ client, path: { run_id: forked.data.id }, throwOnError: true });
  same<RunStatus>()(cancelled.data.status);

  const deleted = await deleteRun({ client, path: { run_id: run.id } });
  if (deleted.error !== undefined) {
    seen.push(`delete refused: ${JSON.stringify(deleted.error.detail)}`);
  }

  const purged = await purgeRuns({
    client,
    body: {
      graph: 'approval',
      status: ['succeeded', 'failed'],
      finished_before: '2026-01-01T00:00:00Z',
      dry_run: true,
    },
    throwOnError: true,
  });
  same<number>()(purged.data.count);
  const stopped = await cancelRuns({
    client,
    body: { tags: ['nightly'], status: 'queued', dry_run: false },
    throwOnError: true,
  });
  same<number>()(stopped.data.count);

  return seen;
}

export async function misuses(): Promise<void> {
  // @ts-expect-error a run's input is required
  await createRun({ client, path: { name: 'approval' }, body: { webhook: null } });
  // @ts-expect-error a misspelt field is refused
  await createRun({ client, path: { name: 'approval' }, body: { input: {}, inptu: {} } });
  // @ts-expect-error list filters take a RunStatus
  await listRuns({ client, query: { status: 'done' } });
  // @ts-expect-error tags are strings
  await createRun({ client, path: { name: 'approval' }, body: { input: {}, tags: [1] } });
  // @ts-expect-error metadata is a JSON object
  await createRun({ client, path: { name: 'approval' }, body: { input: {}, metadata: 'x' } });
  // @ts-expect-error a resume body is {value} or {values}
  await resumeRun({ client, path: { run_id: 'r' }, body: { approved: true } });
  // @ts-expect-error a fork names the node run by its id, a string
  await forkRun({ client, path: { run_id: 'r' }, body: { from_node_run: 5 } });
  // @ts-expect-error purge never deletes runs that have not finished
  await purgeRuns({ client, body: { status: 'running' } });
  // @ts-expect-error get_run needs the run's id
  await getRun({ client });
}
