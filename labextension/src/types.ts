/**
 * The shapes the portside REST API answers with (see kernel/server/openapi.yaml).
 *
 * List rows are the CLI's `--format json` rows (Docker's field names) plus a few fields the
 * panel needs; inspect documents are Docker's inspect JSON, kept loose here.
 */

/** One row of `GET containers` (`portside ps -a --format json` plus extras). */
export interface IContainerRow {
  ID: string;
  FullID: string;
  Names: string;
  Image: string;
  Command: string;
  State: string;
  Status: string;
  Ports: string;
  CreatedAt: string;
  RunningFor: string;
  StartedAt: string;
  FinishedAt: string;
  ExitCode: number;
  GPUs: string;
  Networks: string;
  Init: boolean;
  StopTimeout: number;
  ImageID: string;
  /** In a Slurm context: the container's job. */
  Slurm?: ISlurmJob;
}

/** A container's Slurm job (the engine's inspect document's `Slurm` section). */
export interface ISlurmJob {
  JobId: string;
  Node: string;
  Gres: string;
  State: string;
  Reason: string;
  Elapsed: string;
  StartTime: string;
}

/** One row of `GET images` (`portside images --format json` plus `SizeBytes`). */
export interface IImageRow {
  ID: string;
  FullID: string;
  Repository: string;
  Tag: string;
  Size: string;
  SizeBytes: number;
  CreatedAt: string;
  CreatedSince: string;
  /** the creation time is SOURCE_DATE_EPOCH's (a notebook's portside.lock) */
  Pinned: boolean;
}

/** One row of `GET volumes` (`portside volume ls --format json` plus extras). */
export interface IVolumeRow {
  Name: string;
  Driver: string;
  Mountpoint: string;
  SizeBytes: number | null;
  UsedBy: string[];
}

/** One row of `GET context` (`portside context ls --format json`). */
export interface IContextRow {
  Name: string;
  Current: boolean;
  Description: string;
  DockerEndpoint: string;
  Error: string;
}

/** `GET context`: the server's context and every context of the user. */
export interface IContexts {
  name: string;
  contexts: IContextRow[];
}

/** An engine event, Docker's `events --format json` shape. */
export interface IEngineEvent {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  time: number;
}

/** One line of a long operation's stream (prune, pull). */
export interface IOperationLine {
  status: 'started' | 'progress' | 'done' | 'error';
  result?: any;
  event?: IEngineEvent;
  progress?: any;
  code?: number;
  message?: string;
}

/** The JSON body of every error answer. */
export interface IErrorBody {
  code: number;
  message: string;
  type: string;
}
