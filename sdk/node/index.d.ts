// Type declarations for @credlet/client (hand-written; the package has no build step).

/** Where an injected pod's agent listens: "/credlet/run/agent.sock". */
export declare const DEFAULT_SOCKET: string;

export interface ClientOptions {
  /** The agent's Unix socket. Default: $CREDLET_SOCKET, else DEFAULT_SOCKET. */
  socketPath?: string;
  /** Bound on each request other than a long poll, in ms. Default 10000. */
  timeoutMs?: number;
  /** Tries of get/list/health before a transient error is thrown. Default 5. */
  attempts?: number;
  /** [first, longest] pause between retries in ms; doubles, with jitter. Default [100, 5000]. */
  backoff?: [number, number];
  /** Client-side rate limit in requests per second (burst of the same size). Default null: none. */
  maxRps?: number | null;
  /** How long one long poll of watch() waits before asking again, in ms (>= 1000). Default 60000. */
  waitTimeoutMs?: number;
  /** Where watch() reports the errors it retries. Default console; null: nowhere. */
  logger?: { warn(message: string): void } | null;
}

export interface RequestOptions {
  /** Aborting it rejects the call with the signal's reason. */
  signal?: AbortSignal;
}

export interface WatchOptions {
  /** Aborting it ends the iteration (no error). */
  signal?: AbortSignal;
  /** Overrides the client's waitTimeoutMs for this watch. */
  waitTimeoutMs?: number;
}

/**
 * One version of a credential set. util.inspect, console.log,
 * JSON.stringify, String() and template literals never show a value.
 */
export declare class Credential {
  readonly name: string;
  readonly version: number;
  /** When the agent read this version from its source. */
  readonly fetchedAt: Date | null;
  /** When this version stops being valid; null when it does not expire. */
  readonly expiresAt: Date | null;
  /** Field name → value (frozen). */
  readonly fields: Readonly<Record<string, string>>;
  /** The field names, sorted. */
  readonly fieldNames: string[];
  /** One field's value, or undefined. */
  field(name: string): string | undefined;
  /** "credential NAME vN fields [a b] values [REDACTED]" */
  toString(): string;
  /** The credential with every value replaced by "[REDACTED]". */
  toJSON(): {
    name: string;
    version: number;
    fields: Record<string, string>;
    fetchedAt: Date | null;
    expiresAt: Date | null;
  };
}

/** One entry of list(): a set's name and version, no values. */
export interface Info {
  name: string;
  /** 0 when not fetched yet. */
  version: number;
  fetchedAt: Date | null;
}

export interface CredentialHealth {
  /** 0 when not fetched yet. */
  version: number;
  /** Seconds since the last successful check against the source; null before one. */
  ageSeconds: number | null;
  /** The last failure since then. */
  lastError: string | null;
  /** Readiness does not wait for this set. */
  optional: boolean;
}

export interface Health {
  ready: boolean;
  credentials: Record<string, CredentialHealth>;
}

export declare class Client {
  constructor(options?: ClientOptions);
  readonly socketPath: string;
  readonly timeoutMs: number;
  readonly attempts: number;
  readonly backoff: [number, number];
  readonly maxRps: number | null;
  readonly waitTimeoutMs: number;
  /** The current version of a credential set. */
  get(name: string, options?: RequestOptions): Promise<Credential>;
  /**
   * The version before the current one, kept by the agent after a rotation;
   * rejects with NotFoundError when it holds none.
   */
  getPrevious(name: string, options?: RequestOptions): Promise<Credential>;
  /** Every set the agent holds. */
  list(options?: RequestOptions): Promise<Info[]>;
  /** The agent's readiness and each set's state. */
  health(options?: RequestOptions): Promise<Health>;
  /**
   * The current version, then each new one as the agent commits it.
   * Survives an agent restart; throws ForbiddenError, NotFoundError and
   * BadRequestError at once; ends when the signal aborts or the client is closed.
   */
  watch(name: string, options?: WatchOptions): AsyncGenerator<Credential, void, undefined>;
  /** Closes the connections and ends running watches. */
  close(): void;
}

/** An error answer from the agent, or a failure to reach it (status 0). */
export declare class CredletError extends Error {
  constructor(status: number, code: string, detail: string, options?: { cause?: unknown });
  /** HTTP status; 0 when the agent did not answer. */
  readonly status: number;
  /** forbidden, not_found, not_ready, bad_request, unavailable, closed, ... */
  readonly code: string;
  /** The agent's one-line message. */
  readonly detail: string;
}
/** 403: this process's UID/GID may not read from the agent. */
export declare class ForbiddenError extends CredletError {}
/** 404: no such credential set. */
export declare class NotFoundError extends CredletError {}
/** 503: the set has not been fetched yet (thrown after the retries). */
export declare class NotReadyError extends CredletError {}
/** 400: a malformed request, such as an invalid set name. */
export declare class BadRequestError extends CredletError {}
/** The socket is absent or the agent did not answer, after the retries. */
export declare class UnavailableError extends CredletError {}
