/**
 * A container's Slurm job, shown under its row when the panel's context is a Slurm cluster:
 * the job id, the node it runs on (or why it waits), the GPUs Slurm allocated and the time the
 * job has run, counted as `squeue` counts it. The row's data comes from the REST API's
 * `Slurm` field (the engine's inspect document, `Slurm: {JobId, Node, Gres, ...}`).
 */
import * as React from 'react';

import { ISlurmJob } from './types';

/** Slurm's clock for a duration: `0:42`, `12:03`, `1:02:03`, `2-01:02:03` (as `squeue %M`). */
export function slurmClock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = String(s % 60).padStart(2, '0');
  if (days) {
    return `${days}-${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}:${secs}`;
  }
  if (hours) {
    return `${hours}:${String(minutes).padStart(2, '0')}:${secs}`;
  }
  return `${minutes}:${secs}`;
}

/** How long the job has run: from its start time while it runs (the clock moves on between
 * listings), else what Slurm last said. */
export function elapsed(job: ISlurmJob, now: number = Date.now()): string {
  const started = Date.parse(job.StartTime);
  if (job.State === 'RUNNING' && job.StartTime && !isNaN(started)) {
    return slurmClock((now - started) / 1000);
  }
  return job.Elapsed;
}

/** The job line of one container (the panel re-renders it as its clock ticks). */
export function SlurmJob(props: { job: ISlurmJob; gpus: string }): JSX.Element {
  const job = props.job;
  const waiting = job.State === 'PENDING';
  const gpus = props.gpus || job.Gres;
  return (
    <div className="ps-item-meta ps-slurm" data-slurm-job={job.JobId} data-slurm-state={job.State}>
      {job.JobId && <span title={`Slurm job ${job.JobId} (${job.State.toLowerCase()})`}>job {job.JobId}</span>}
      {waiting ? (
        <span title="Why Slurm has not started the job yet">pending ({job.Reason || 'not scheduled yet'})</span>
      ) : (
        job.Node && <span title="The node Slurm placed the job on" data-slurm-node={job.Node}>on {job.Node}</span>
      )}
      {gpus && <span title="GPUs Slurm allocated to the job">GPUs: {gpus}</span>}
      {!waiting && job.JobId && (
        <span title="Time the job has run" data-slurm-elapsed>
          elapsed {elapsed(job)}
        </span>
      )}
    </div>
  );
}
