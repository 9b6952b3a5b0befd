/**
 * The portside side panel: Containers, Images and Volumes with their actions.
 *
 * The panel keeps three lists fetched from the REST API and refreshes them whenever the engine's
 * event stream (`GET portside/api/events`) reports a change, so a container started from a
 * notebook or a terminal shows up within a moment, with no reload. The toolbar shows the
 * server's context (`portside context`) and switches it (`PUT portside/api/context`): the lists,
 * the actions and the event stream then come from that context's engine (a Docker Engine's
 * events API for a Docker context). Destructive actions ask first
 * (`showDialog`); colours come from JupyterLab's CSS variables, so light and dark themes follow.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, InputDialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { requestAPI, segment, streamAPI } from './handler';
import { SlurmJob } from './slurm';
import {
  IContainerRow,
  IContexts,
  IEngineEvent,
  IImageRow,
  IOperationLine,
  IVolumeRow
} from './types';

/** Wait this long after an event before refreshing, so a burst of events costs one refresh. */
const REFRESH_DEBOUNCE_MS = 150;
/** Wait this long before reopening a broken event stream. */
const RECONNECT_MS = 1000;
/** A status line (not an error) goes away after this long. */
const MESSAGE_MS = 6000;
/** Relative times ("Up 5 seconds") are redrawn this often. */
const TICK_MS = 1000;

/** `4261888` -> `4.26 MB` (decimal units, as Docker prints sizes). */
export function humanSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) {
    return '';
  }
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < units.length - 1) {
    size /= 1000;
    i++;
  }
  return `${i === 0 ? size : size.toPrecision(3)} ${units[i]}`;
}

/**
 * Docker's words for a duration (Go's `units.HumanDuration`): `Less than a second`,
 * `5 seconds`, `About a minute`, `3 minutes`, `About an hour`, `2 hours`, `3 days`...
 */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) {
    return 'Less than a second';
  }
  if (s === 1) {
    return '1 second';
  }
  if (s < 60) {
    return `${s} seconds`;
  }
  const m = Math.floor(s / 60);
  if (m === 1) {
    return 'About a minute';
  }
  if (m < 60) {
    return `${m} minutes`;
  }
  const h = Math.round(s / 3600);
  if (h === 1) {
    return 'About an hour';
  }
  if (h < 48) {
    return `${h} hours`;
  }
  if (h < 24 * 7 * 2) {
    return `${Math.floor(h / 24)} days`;
  }
  if (h < 24 * 30 * 2) {
    return `${Math.floor(h / 24 / 7)} weeks`;
  }
  if (h < 24 * 365 * 2) {
    return `${Math.floor(h / 24 / 30)} months`;
  }
  return `${Math.floor(h / 24 / 365)} years`;
}

/** A container's status as `ps` words it, computed now (so it moves on by itself). */
export function liveStatus(row: IContainerRow, now: number = Date.now()): string {
  const started = Date.parse(row.StartedAt);
  const finished = Date.parse(row.FinishedAt);
  if (row.State === 'running' && started > 0) {
    return `Up ${humanDuration(now - started)}`;
  }
  if (row.State === 'paused' && started > 0) {
    return `Up ${humanDuration(now - started)} (Paused)`;
  }
  if (row.State === 'exited' && finished > 0) {
    return `Exited (${row.ExitCode ?? 0}) ${humanDuration(now - finished)} ago`;
  }
  return row.Status;
}

/** `images`' CREATED words for `iso`, now: `5 seconds ago`, `3 days ago`. */
export function createdSince(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  return isNaN(t) ? '' : `${humanDuration(now - t)} ago`;
}

/** How long ago `iso` was, short: `42s`, `5m`, `3h`, `2d`. */
export function uptime(iso: string, now: number = Date.now()): string {
  const started = Date.parse(iso);
  if (!iso || isNaN(started) || started <= 0) {
    return '';
  }
  const s = Math.max(0, Math.floor((now - started) / 1000));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h`;
  }
  return `${Math.floor(s / 86400)}d`;
}

async function confirm(title: string, body: string, label: string): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
  });
  return result.button.accept;
}

async function attempt(what: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    await showErrorMessage(what, (error as Error).message);
  }
}

interface IViewProps {
  app: JupyterFrontEnd;
}

interface ILogsView {
  name: string;
  text: string;
  abort: AbortController;
}

function Section(props: {
  title: string;
  count: number;
  onPrune: () => void;
  children: React.ReactNode;
}): JSX.Element {
  const [open, setOpen] = React.useState(true);
  return (
    <section className="ps-section" data-section={props.title.toLowerCase()}>
      <header className="ps-section-header">
        <button className="ps-toggle" onClick={() => setOpen(!open)} title={open ? 'Collapse' : 'Expand'}>
          {open ? '▾' : '▸'}
        </button>
        <span className="ps-section-title">
          {props.title} <span className="ps-count">{props.count}</span>
        </span>
        <button className="ps-button ps-prune" onClick={props.onPrune} title={`Prune ${props.title.toLowerCase()}`}>
          Prune
        </button>
      </header>
      {open && <div className="ps-section-body">{props.children}</div>}
    </section>
  );
}

function Action(props: {
  label: string;
  onClick: () => void;
  danger?: boolean;
  title?: string;
  disabled?: boolean;
}): JSX.Element {
  return (
    <button
      className={`ps-button${props.danger ? ' ps-danger' : ''}`}
      title={props.title ?? props.label}
      data-action={props.label.toLowerCase()}
      disabled={props.disabled}
      onClick={props.onClick}
    >
      {props.label}
    </button>
  );
}

/** What the run form returns. */
interface IRunSpec {
  name: string;
  command: string;
  ports: string[];
  volumes: string[];
  env: string[];
  gpus: string;
  init: boolean;
}

/** The run form: one dialog body with every field (`getValue` reads them). */
class RunForm extends Widget {
  constructor(image: string, defaultCommand: string) {
    super({ node: document.createElement('form') });
    this.addClass('ps-run-form');
    const field = (key: string, label: string, placeholder: string, hint: string, value = '') =>
      `<label title="${hint}"><span>${label}</span>` +
      `<input class="jp-mod-styled" name="${key}" placeholder="${placeholder}" value="${value}"></label>`;
    const area = (key: string, label: string, placeholder: string, hint: string) =>
      `<label title="${hint}"><span>${label}</span>` +
      `<textarea class="jp-mod-styled" rows="2" name="${key}" placeholder="${placeholder}"></textarea></label>`;
    this.node.innerHTML =
      field('name', 'Name', 'optional', 'The container\'s name (--name)') +
      field('command', 'Command', 'the image\'s own command', 'What to run (split like a shell line); empty runs the image\'s CMD', defaultCommand) +
      area('ports', 'Ports', '8080:80, 127.0.0.1::8888', '-p values, one per line or comma: [ip:][host:]container[/proto]') +
      area('volumes', 'Volumes', 'data:/data, /srv/in:/in:ro', '-v values, one per line or comma: name-or-path:/path[:ro]') +
      area('env', 'Environment', 'KEY=value', '-e values, one per line') +
      field('gpus', 'GPUs', 'none', '--gpus: all, 2, device=0,1 (empty for none)') +
      `<label class="ps-check" title="--init: a small init as PID 1 forwards signals (stop is immediate) and reaps zombies">` +
      `<input type="checkbox" name="init" ${defaultCommand ? 'checked' : ''}> Run an init as PID 1 (--init)</label>` +
      `<p class="ps-hint">Image: ${image}</p>`;
    this.node.addEventListener('submit', e => e.preventDefault());
  }

  getValue(): IRunSpec {
    const form = this.node as HTMLFormElement;
    const value = (key: string) => ((form.elements.namedItem(key) as HTMLInputElement | null)?.value ?? '').trim();
    const list = (key: string, sep: RegExp) => value(key).split(sep).map(v => v.trim()).filter(v => v);
    return {
      name: value('name'),
      command: value('command'),
      ports: list('ports', /[\n,]+/),
      volumes: list('volumes', /[\n,]+/),
      env: list('env', /\n+/),
      gpus: value('gpus'),
      init: (form.elements.namedItem('init') as HTMLInputElement).checked
    };
  }
}

/** A checkbox dialog body for prune's `-a`; `getValue` says whether it is ticked. */
class PruneForm extends Widget {
  constructor(text: string, allLabel: string) {
    super();
    this.addClass('ps-prune-form');
    const p = document.createElement('p');
    p.textContent = text;
    const label = document.createElement('label');
    label.className = 'ps-check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'all';
    label.append(box, ` ${allLabel}`);
    this.node.append(p, label);
  }

  getValue(): boolean {
    return (this.node.querySelector('input[name="all"]') as HTMLInputElement).checked;
  }
}

/** The panel's content. */
export function PortsideView(props: IViewProps): JSX.Element {
  const [containers, setContainers] = React.useState<IContainerRow[]>([]);
  const [images, setImages] = React.useState<IImageRow[]>([]);
  const [volumes, setVolumes] = React.useState<IVolumeRow[]>([]);
  const [filter, setFilter] = React.useState('');
  const [message, setMessage] = React.useState('');
  const [live, setLive] = React.useState(false);
  const [logs, setLogs] = React.useState<ILogsView | null>(null);
  const [context, setContext] = React.useState('');
  const [contexts, setContexts] = React.useState<string[]>([]);
  const [busy, setBusy] = React.useState<Record<string, string>>({});
  const [, setTick] = React.useState(0);
  const messageTimer = React.useRef<number | undefined>(undefined);

  // a status line says what just happened, then goes away
  const say = React.useCallback((text: string, sticky = false) => {
    setMessage(text);
    window.clearTimeout(messageTimer.current);
    if (!sticky) {
      messageTimer.current = window.setTimeout(() => setMessage(''), MESSAGE_MS);
    }
  }, []);

  const loadContexts = React.useCallback(async () => {
    try {
      const doc = await requestAPI<IContexts>('context');
      setContexts(doc.contexts.map(c => c.Name));
      setContext(doc.name);
    } catch (error) {
      say(`context: ${(error as Error).message}`);
    }
  }, []);

  React.useEffect(() => {
    void loadContexts();
  }, [loadContexts]);

  const switchContext = (name: string) =>
    attempt(`Cannot switch to context ${name}`, async () => {
      const doc = await requestAPI<IContexts>('context', {
        method: 'PUT',
        body: JSON.stringify({ name })
      });
      setContexts(doc.contexts.map(c => c.Name));
      say(`context: ${doc.name}`);
      setContext(doc.name); // the event stream below follows the new engine
    });

  const refresh = React.useCallback(async () => {
    const load = async <T,>(path: string, set: (rows: T[]) => void): Promise<void> => {
      try {
        set(await requestAPI<T[]>(path));
      } catch (error) {
        // a collection the engine does not offer (404; 501: a Slurm context's volumes) is
        // shown empty
        set([]);
        if (![404, 501].includes((error as { code?: number }).code ?? 0)) {
          say(`${path}: ${(error as Error).message}`);
        }
      }
    };
    await Promise.all([
      load<IContainerRow>('containers?all=1', setContainers),
      load<IImageRow>('images', setImages),
      load<IVolumeRow>('volumes', setVolumes)
    ]);
  }, []);

  // Follow the event stream of the context's engine for as long as the panel shows it; refresh
  // on each burst of events.
  React.useEffect(() => {
    if (!context) {
      return;
    }
    const abort = new AbortController();
    let timer: number | undefined;
    const schedule = (): void => {
      if (timer === undefined) {
        timer = window.setTimeout(() => {
          timer = undefined;
          void refresh();
        }, REFRESH_DEBOUNCE_MS);
      }
    };
    const follow = async (): Promise<void> => {
      while (!abort.signal.aborted) {
        try {
          setLive(true);
          // refresh after the stream is open, so nothing between the two is missed
          const opened = streamAPI<IEngineEvent>('events', () => schedule(), {
            signal: abort.signal
          });
          void refresh();
          await opened;
        } catch {
          // the server restarted or the network dropped: try again shortly
        }
        setLive(false);
        await new Promise(resolve => setTimeout(resolve, RECONNECT_MS));
      }
    };
    void follow();
    // relative times move on even when nothing happens
    const ticker = window.setInterval(() => setTick(t => t + 1), TICK_MS);
    return () => {
      abort.abort();
      window.clearInterval(ticker);
      if (timer !== undefined) {
        window.clearTimeout(timer);
      }
    };
  }, [refresh, context]);

  React.useEffect(() => () => logs?.abort.abort(), [logs?.abort]);

  // the logs of a container that is gone are closed with it
  React.useEffect(() => {
    if (logs && !containers.some(c => c.Names === logs.name)) {
      logs.abort.abort();
      setLogs(null);
    }
  }, [containers, logs]);

  const matches = (...texts: string[]): boolean =>
    !filter || texts.some(t => t.toLowerCase().includes(filter.toLowerCase()));

  // ---------------------------------------------------------------- actions
  const doing: Record<string, string> = {
    start: 'Starting',
    stop: 'Stopping',
    restart: 'Restarting',
    remove: 'Removing'
  };
  const done: Record<string, string> = { start: 'started', stop: 'stopped', restart: 'restarted', remove: 'removed' };

  /** Run one action on a container with its buttons disabled and its progress shown. */
  const withBusy = (name: string, action: string, fn: () => Promise<unknown>) =>
    attempt(`Cannot ${action} ${name}`, async () => {
      setBusy(b => ({ ...b, [name]: action }));
      const t0 = Date.now();
      say(`${doing[action] ?? action} ${name}…`, true);
      try {
        await fn();
        say(`${name} ${done[action] ?? action} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        await refresh();
      } catch (error) {
        say('');
        throw error;
      } finally {
        setBusy(b => {
          const rest = { ...b };
          delete rest[name];
          return rest;
        });
      }
    });

  const containerAction = (row: IContainerRow, action: string) =>
    withBusy(row.Names, action, () => requestAPI(`containers/${segment(row.Names)}/${action}`, { method: 'POST' }));

  const removeContainer = async (row: IContainerRow) => {
    const running = row.State === 'running' || row.State === 'paused';
    const body = running
      ? `${row.Names} is running: it will be killed (SIGKILL, no clean stop), then removed with its writable layer.`
      : `Remove container ${row.Names}? Its writable layer is deleted.`;
    if (await confirm(running ? 'Kill and remove container' : 'Remove container', body, running ? 'Kill and remove' : 'Remove')) {
      await withBusy(row.Names, 'remove', () =>
        requestAPI(`containers/${segment(row.Names)}${running ? '?force=1' : ''}`, { method: 'DELETE' })
      );
    }
  };

  const showLogs = (name: string) => {
    logs?.abort.abort();
    const view: ILogsView = { name, text: '', abort: new AbortController() };
    setLogs(view);
    let text = '';
    void streamAPI<{ text: string }>(
      `containers/${segment(name)}/logs?follow=1&tail=200`,
      item => {
        text += item.text ?? '';
        setLogs(current => (current && current.abort === view.abort ? { ...current, text } : current));
      },
      { signal: view.abort.signal }
    ).catch(error => {
      if (!view.abort.signal.aborted) {
        setLogs(current => (current && current.abort === view.abort ? { ...current, text: `${text}\n[${(error as Error).message}]` } : current));
      }
    });
  };

  // the server starts a terminal whose process is `portside exec -it NAME <shell>`
  const openTerminal = (name: string) =>
    attempt(`Cannot open a terminal in ${name}`, async () => {
      const model = await requestAPI<{ name: string }>(`containers/${segment(name)}/terminal`, { method: 'POST' });
      await props.app.commands.execute('terminal:open', { name: model.name });
    });

  const runImage = (image: string) =>
    attempt(`Cannot run ${image}`, async () => {
      // an image whose own command is a bare shell or interpreter exits at once when run
      // detached (no terminal): offer a command that keeps it up
      const doc = await requestAPI<{ Config?: { Cmd?: string[] | null; Entrypoint?: string[] | null } }>(`images/${segment(image)}`);
      const cmd = doc.Config?.Cmd ?? [];
      const shells = ['sh', 'bash', '/bin/sh', '/bin/bash', 'python3', 'python'];
      const idle = !doc.Config?.Entrypoint?.length && (cmd.length === 0 || (cmd.length === 1 && shells.includes(cmd[0])));
      const form = new RunForm(image, idle ? 'sleep infinity' : '');
      const result = await showDialog({
        title: `Run ${image}`,
        body: form,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      const spec = result.value as IRunSpec;
      say(`Starting a container of ${image}…`, true);
      const made = await requestAPI<{ Name?: string }>('containers', {
        method: 'POST',
        body: JSON.stringify({
          image,
          name: spec.name || undefined,
          command: spec.command || undefined,
          ports: spec.ports,
          volumes: spec.volumes,
          env: spec.env,
          gpus: spec.gpus || undefined,
          init: spec.init
        })
      });
      say(`Started ${(made.Name ?? '').replace(/^\//, '')} from ${image}`);
      await refresh();
    });

  const tagImage = (image: string) =>
    attempt(`Cannot tag ${image}`, async () => {
      const result = await InputDialog.getText({ title: `Tag ${image}`, label: 'New name', placeholder: 'repository:tag' });
      if (result.button.accept && result.value) {
        await requestAPI(`images/${segment(image)}/tag`, { method: 'POST', body: JSON.stringify({ target: result.value }) });
        await refresh();
      }
    });

  const removeImage = async (image: string) => {
    if (await confirm('Remove image', `Remove ${image}?`, 'Remove')) {
      await attempt(`Cannot remove ${image}`, async () => {
        await requestAPI(`images/${segment(image)}`, { method: 'DELETE' });
        await refresh();
      });
    }
  };

  const inspectVolume = (name: string) =>
    attempt(`Cannot inspect ${name}`, async () => {
      const doc = await requestAPI<unknown>(`volumes/${segment(name)}`);
      await showDialog({
        title: `Volume ${name}`,
        body: <pre className="ps-inspect">{JSON.stringify(doc, null, 2)}</pre>,
        buttons: [Dialog.okButton({ label: 'Close' })]
      });
    });

  const removeVolume = async (name: string) => {
    if (await confirm('Remove volume', `Remove volume ${name} and all its data?`, 'Remove')) {
      await attempt(`Cannot remove ${name}`, async () => {
        await requestAPI(`volumes/${segment(name)}`, { method: 'DELETE' });
        await refresh();
      });
    }
  };

  // the same defaults as the CLI (and Docker): images prune removes dangling images and
  // volume prune anonymous volumes; `-a` (everything unused) only when ticked
  const prune = async (what: 'containers' | 'images' | 'volumes') => {
    let all = false;
    if (what === 'containers') {
      if (!(await confirm('Prune containers', 'Remove all stopped containers?', 'Prune'))) {
        return;
      }
    } else {
      const form =
        what === 'images'
          ? new PruneForm('Remove dangling images (untagged, used by no container)?', 'Also every image no container uses (prune -a)')
          : new PruneForm('Remove anonymous volumes no container uses? Named volumes are kept.', 'Also named volumes no container uses (prune -a)');
      const result = await showDialog({
        title: `Prune ${what}`,
        body: form,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Prune' })]
      });
      if (!result.button.accept) {
        return;
      }
      all = Boolean(result.value);
    }
    await attempt(`Cannot prune ${what}`, async () => {
      say(`Pruning ${what}…`, true);
      await streamAPI<IOperationLine>(`${what}/prune${all ? '?all=1' : ''}`, line => {
        if (line.status === 'done') {
          const result = line.result ?? {};
          const removed =
            what === 'images'
              ? (result.ImagesDeleted ?? []).filter((d: Record<string, string>) => d.Deleted).length
              : (what === 'volumes' ? result.VolumesDeleted : result.ContainersDeleted)?.length ?? 0;
          const noun = removed === 1 ? what.slice(0, -1) : what;
          say(`Pruned ${removed} ${noun}, ${humanSize(result.SpaceReclaimed ?? 0)} reclaimed`);
        } else if (line.status === 'error') {
          throw new Error(line.message);
        }
      }, { method: 'POST' });
      await refresh();
    });
  };

  // ---------------------------------------------------------------- view
  const shownContainers = containers.filter(c => matches(c.Names, c.Image, c.State, c.ID));
  const shownImages = images.filter(i => matches(i.Repository, i.Tag, i.ID));
  const shownVolumes = volumes.filter(v => matches(v.Name, ...(v.UsedBy ?? [])));
  const imageName = (i: IImageRow) => (i.Repository === '<none>' ? i.ID : `${i.Repository}:${i.Tag}`);

  return (
    <div className="ps-panel">
      <div className="ps-toolbar ps-context-bar">
        <label className="ps-context-label" htmlFor="ps-context">
          Context
        </label>
        <select
          id="ps-context"
          className="ps-context jp-mod-styled"
          data-context={context}
          value={context}
          title="The engine the panel shows (portside context)"
          onChange={e => void switchContext(e.target.value)}
        >
          {contexts.map(name => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
      </div>
      <div className="ps-toolbar">
        <input
          className="ps-filter jp-mod-styled"
          placeholder="Filter"
          value={filter}
          onChange={e => setFilter(e.target.value)}
        />
        <span className={`ps-live${live ? ' ps-live-on' : ''}`} title={live ? 'Following engine events' : 'Reconnecting…'}>
          ●
        </span>
        <button className="ps-button" title="Refresh" onClick={() => void refresh()}>
          ⟳
        </button>
      </div>
      {message && <div className="ps-message">{message}</div>}

      <Section title="Containers" count={containers.length} onPrune={() => void prune('containers')}>
        {shownContainers.map(c => {
          const doingNow = busy[c.Names];
          const status = doingNow ? `${doing[doingNow] ?? doingNow}…` : liveStatus(c);
          const grace = `${c.StopTimeout ?? 10} s`;
          return (
            <div className="ps-item" key={c.FullID || c.ID} data-container={c.Names} data-state={c.State} data-busy={doingNow ?? ''}>
              <div className="ps-item-main">
                <span className={`ps-state ps-state-${c.State}`} title={c.State} />
                <span className="ps-name" title={c.Names}>
                  {c.Names}
                </span>
                <span className="ps-status" title={`${c.State}, created ${c.CreatedAt}`}>
                  {status}
                </span>
              </div>
              <div className="ps-item-meta">
                <span className="ps-mono" title={`Container ID ${c.FullID}`}>{c.ID}</span>
                <span className="ps-image" title={`Image ${c.Image}${c.ImageID ? ` (${c.ImageID})` : ''}`}>
                  {c.Image}
                </span>
                {c.Ports && <span title="Published ports (host -> container)">{c.Ports}</span>}
                {c.Networks && <span title="Networks">net: {c.Networks}</span>}
                {c.GPUs && !c.Slurm && <span title="GPUs">GPUs: {c.GPUs}</span>}
              </div>
              {c.Slurm && <SlurmJob job={c.Slurm} gpus={c.GPUs} />}
              <div className="ps-item-actions" data-actions-for={c.Names}>
                {c.State === 'running' ? (
                  <Action label="Stop" title={`Stop: its stop signal, then SIGKILL after ${grace}`} disabled={!!doingNow} onClick={() => void containerAction(c, 'stop')} />
                ) : (
                  <Action label="Start" title="Start it again" disabled={!!doingNow} onClick={() => void containerAction(c, 'start')} />
                )}
                <Action label="Restart" title={`Restart: stop (up to ${grace}), then start`} disabled={!!doingNow} onClick={() => void containerAction(c, 'restart')} />
                <Action label="Logs" title="Follow its output" onClick={() => showLogs(c.Names)} />
                {c.State === 'running' && (
                  <Action label="Terminal" title="Open a shell inside the container in a terminal" disabled={!!doingNow} onClick={() => void openTerminal(c.Names)} />
                )}
                <Action
                  label="Remove"
                  title={c.State === 'running' ? 'Kill and remove it' : 'Remove it'}
                  danger
                  disabled={!!doingNow}
                  onClick={() => void removeContainer(c)}
                />
              </div>
            </div>
          );
        })}
        {logs && (
          <div className="ps-logs" data-logs-for={logs.name}>
            <header>
              Logs: {logs.name} <span className="ps-hint">(following)</span>
              <button className="ps-button" title="Close logs" data-action="close-logs" onClick={() => setLogs(null)}>
                ✕
              </button>
            </header>
            <pre>{logs.text}</pre>
          </div>
        )}
      </Section>

      <Section title="Images" count={images.length} onPrune={() => void prune('images')}>
        {shownImages.map(i => (
          <div className="ps-item" key={`${i.FullID}/${i.Repository}/${i.Tag}`} data-image={imageName(i)}>
            <div className="ps-item-main">
              <span className="ps-name" title={imageName(i)}>
                {imageName(i)}
              </span>
              <span className="ps-status">{i.Size}</span>
            </div>
            <div className="ps-item-meta">
              <span className="ps-mono" title={`Image ID ${i.FullID}`}>{i.ID}</span>
              <span
                className="ps-created"
                title={i.Pinned ? `${i.CreatedAt}: pinned by SOURCE_DATE_EPOCH (portside.lock) so that rebuilds are identical` : i.CreatedAt}
              >
                created {createdSince(i.CreatedAt)}
                {i.Pinned ? ' (pinned)' : ''}
              </span>
            </div>
            <div className="ps-item-actions">
              <Action label="Run" title="Run a container of it (name, command, ports, volumes, env, GPUs)" onClick={() => void runImage(imageName(i))} />
              <Action label="Tag" title="Give it another name" onClick={() => void tagImage(imageName(i))} />
              <Action label="Remove" danger onClick={() => void removeImage(imageName(i))} />
            </div>
          </div>
        ))}
      </Section>

      <Section title="Volumes" count={volumes.length} onPrune={() => void prune('volumes')}>
        {shownVolumes.map(v => (
          <div className="ps-item" key={v.Name} data-volume={v.Name}>
            <div className="ps-item-main">
              <span className="ps-name" title={v.Name}>
                {v.Name}
              </span>
              <span className="ps-status">{humanSize(v.SizeBytes)}</span>
            </div>
            <div className="ps-item-meta">
              <span title="Used by">{(v.UsedBy ?? []).length ? `used by ${v.UsedBy.join(', ')}` : 'unused'}</span>
            </div>
            <div className="ps-item-actions">
              <Action label="Inspect" onClick={() => void inspectVolume(v.Name)} />
              <Action label="Remove" danger onClick={() => void removeVolume(v.Name)} />
            </div>
          </div>
        ))}
      </Section>
    </div>
  );
}

/** The Lumino widget that JupyterLab docks in the left sidebar. */
export class PortsidePanel extends ReactWidget {
  constructor(private readonly app: JupyterFrontEnd) {
    super();
    this.id = 'portside-panel';
    this.addClass('ps-root');
  }

  protected render(): JSX.Element {
    return <PortsideView app={this.app} />;
  }
}
