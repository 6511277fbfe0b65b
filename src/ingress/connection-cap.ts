/**
 * Open connections per worker, across every ingress (HTTP/WebSocket, both
 * gRPC servers), against server.max_connections: file descriptors are a
 * process-wide resource, and a process out of them fails every accept and
 * every backend reconnect alike (ECONNRESET for new clients, EMFILE inside).
 *
 * At the cap, a new connection takes the place of the connection that has
 * been quiet longest (no byte in or out for at least QUIET_MS), which is
 * closed; when every connection is busy the new one is refused (closed at
 * once). Silent and idle connections are closed by their timeouts anyway
 * (header_timeout_ms, idle_timeout_ms); the cap makes that happen as soon as
 * the room is needed instead of tens of seconds later. A subscriber that
 * received nothing for a while counts as quiet: under that pressure it is
 * closed like any other (clients that heal, like Prism's SDKs, resubscribe).
 *
 * Activity is read from the sockets' byte counters when room is needed, not
 * tracked per chunk, so the serving path pays nothing for it.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";

/** A connection quiet for less than this is never closed to make room. */
export const QUIET_MS = 1000;

interface Entry {
  /** bytesRead + bytesWritten when last looked at. */
  bytes: number;
  /** When `bytes` last changed (or the connection was accepted). */
  since: number;
}

export class ConnectionCap {
  private readonly open = new Map<Socket, Entry>();
  /** Connections closed to make room, and new ones refused (tests, diagnostics). */
  closedForRoom = 0;
  refused = 0;
  constructor(readonly max: number) {}

  get count(): number {
    return this.open.size;
  }

  /** A connection was accepted: counted, or closed (false) when the worker is at its cap and none is quiet. */
  admit(socket: Socket): boolean {
    if (this.max > 0 && this.open.size >= this.max && !this.makeRoom()) {
      this.refused++;
      socket.destroy();
      return false;
    }
    this.open.set(socket, { bytes: socket.bytesRead + socket.bytesWritten, since: Date.now() });
    socket.once("close", () => this.open.delete(socket));
    return true;
  }

  /** Closes the connection quiet longest; false when none has been quiet for QUIET_MS. */
  private makeRoom(): boolean {
    const now = Date.now();
    let quietest: Socket | undefined;
    let oldest = now - QUIET_MS;
    for (const [s, e] of this.open) {
      if (s.destroyed) {
        this.open.delete(s);
        continue;
      }
      const bytes = s.bytesRead + s.bytesWritten;
      if (bytes !== e.bytes) {
        e.bytes = bytes;
        e.since = now;
      } else if (e.since <= oldest) {
        oldest = e.since;
        quietest = s;
      }
    }
    if (this.open.size < this.max) return true;
    if (quietest === undefined) return false;
    this.open.delete(quietest);
    this.closedForRoom++;
    quietest.destroy();
    return true;
  }
}

/** The soft limit on open files of this process (Linux /proc), or undefined. */
export function openFilesLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (!m || m[1] === "unlimited") return undefined;
    return Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * server.max_connections unset: the open-files limit less what the process needs besides client
 * connections (backend pools, files, the config store: 64 or 1/8 of the limit, whichever is more);
 * 0 (no cap) when the limit is unknown.
 */
export function defaultMaxConnections(limit = openFilesLimit()): number {
  if (limit === undefined) return 0;
  return Math.max(16, limit - Math.max(64, Math.floor(limit / 8)));
}
