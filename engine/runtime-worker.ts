// The runtime worker thread: hosts LocalSessions by id so their blocking native runs never stall the main
// thread. Started by runtime.ts; every request gets exactly one reply, errors included.
import { parentPort, workerData } from 'node:worker_threads';
import {
  exitGuard,
  type HostReply,
  type HostRequest,
  LocalSession,
  packForTransfer,
  RuntimeError,
} from './runtime.ts';

const sessions = new Map<number, LocalSession>();
// Requests being handled; shutdown waits for them so no session is released under a running request.
const handling = new Set<Promise<unknown>>();
let nextSession = 1;

async function handle(
  request: HostRequest,
): Promise<{ result: HostReply & { ok: true }; transfer: ArrayBuffer[] }> {
  switch (request.kind) {
    case 'open': {
      const session = await LocalSession.open(request.model, request.options);
      const id = nextSession++;
      sessions.set(id, session);
      const opened = { session: id, inputs: [...session.inputs], outputs: [...session.outputs] };
      return { result: { id: request.id, ok: true, result: opened }, transfer: [] };
    }
    case 'run': {
      const outputs = await sessionFor(request.session).run(request.feeds, request.fetches);
      // The worker drops its outputs right away, so their buffers move to the main thread uncopied.
      const packed = packForTransfer(outputs, true);
      return { result: { id: request.id, ok: true, result: packed.tensors }, transfer: packed.transfer };
    }
    case 'release': {
      await sessionFor(request.session).release();
      sessions.delete(request.session);
      return { result: { id: request.id, ok: true, result: null }, transfer: [] };
    }
    case 'shutdown': {
      await Promise.allSettled(handling);
      await Promise.allSettled([...sessions.values()].map((session) => session.release()));
      sessions.clear();
      parentPort?.close(); // nothing is left to keep this thread alive, so it exits on its own
      return { result: { id: request.id, ok: true, result: null }, transfer: [] };
    }
  }
}

function sessionFor(id: number): LocalSession {
  const session = sessions.get(id);
  if (!session) throw new RuntimeError('session-released', `session ${id} is not open in the runtime worker`);
  return session;
}

function failure(id: number, error: unknown): HostReply {
  if (error instanceof RuntimeError)
    return { id, ok: false, error: { code: error.code, message: error.message } };
  return { id, ok: false, error: { code: 'run-failed', message: `runtime worker: ${String(error)}` } };
}

/** Entry point called by the worker bootstrap in runtime.ts. */
export function serveSessions(): void {
  const port = parentPort;
  if (!port) throw new Error('serveSessions() must run inside the runtime worker thread');
  const guard: Int32Array = workerData.guard;
  port.on('message', (request: HostRequest) => {
    if (Atomics.load(guard, exitGuard.EXITING)) {
      port.postMessage(failure(request.id, new RuntimeError('worker-stopped', 'the process is exiting')));
      return;
    }
    Atomics.add(guard, exitGuard.BUSY, 1);
    const handled = handle(request)
      .then(
        ({ result, transfer }) => port.postMessage(result, transfer),
        (error: unknown) => port.postMessage(failure(request.id, error)),
      )
      .finally(() => {
        Atomics.sub(guard, exitGuard.BUSY, 1);
        Atomics.notify(guard, exitGuard.BUSY);
      });
    if (request.kind === 'shutdown') return;
    handling.add(handled);
    handled.then(() => handling.delete(handled));
  });
}
