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
import * as React from 'react';

import { requestAPI, segment, streamAPI } from './handler';
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

function Action(props: { label: string; onClick: () => void; danger?: boolean }): JSX.Element {
  return (
    <button
      className={`ps-button${props.danger ? ' ps-danger' : ''}`}
      title={props.label}
      data-action={props.label.toLowerCase()}
      onClick={props.onClick}
    >
      {props.label}
    </button>
  );
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
  const [, setTick] = React.useState(0);

  const loadContexts = React.useCallback(async () => {
    try {
      const doc = await requestAPI<IContexts>('context');
      setContexts(doc.contexts.map(c => c.Name));
      setContext(doc.name);
    } catch (error) {
      setMessage(`context: ${(error as Error).message}`);
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
      setMessage(`context: ${doc.name}`);
      setContext(doc.name); // the event stream below follows the new engine
    });

  const refresh = React.useCallback(async () => {
    const load = async <T,>(path: string, set: (rows: T[]) => void): Promise<void> => {
      try {
        set(await requestAPI<T[]>(path));
      } catch (error) {
        // a collection the engine does not offer yet (404) is shown empty
        set([]);
        if ((error as { code?: number }).code !== 404) {
          setMessage(`${path}: ${(error as Error).message}`);
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
    // uptimes move on even when nothing happens
    const ticker = window.setInterval(() => setTick(t => t + 1), 10000);
    return () => {
      abort.abort();
      window.clearInterval(ticker);
      if (timer !== undefined) {
        window.clearTimeout(timer);
      }
    };
  }, [refresh, context]);

  React.useEffect(() => () => logs?.abort.abort(), [logs]);

  const matches = (...texts: string[]): boolean =>
    !filter || texts.some(t => t.toLowerCase().includes(filter.toLowerCase()));

  // ---------------------------------------------------------------- actions
  const containerAction = (name: string, action: string) =>
    attempt(`Cannot ${action} ${name}`, async () => {
      setMessage(`${action} ${name}…`);
      await requestAPI(`containers/${segment(name)}/${action}`, { method: 'POST' });
      setMessage(`${action}: ${name}`);
      await refresh();
    });

  const removeContainer = async (row: IContainerRow) => {
    if (await confirm('Remove container', `Remove container ${row.Names}? Its writable layer is deleted.`, 'Remove')) {
      await attempt(`Cannot remove ${row.Names}`, async () => {
        const force = row.State === 'running' ? '?force=1' : '';
        await requestAPI(`containers/${segment(row.Names)}${force}`, { method: 'DELETE' });
        await refresh();
      });
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

  const openTerminal = (name: string) =>
    attempt(`Cannot open a terminal in ${name}`, async () => {
      const session = await props.app.serviceManager.terminals.startNew();
      await props.app.commands.execute('terminal:open', { name: session.name });
      // the connection queues input until its socket is open
      const selector = context && context !== 'default' ? ` -c ${context}` : '';
      session.send({ type: 'stdin', content: [`portside${selector} exec -it ${name} sh\r`] });
      window.setTimeout(() => session.dispose(), 3000);
    });

  const runImage = (image: string) =>
    attempt(`Cannot run ${image}`, async () => {
      const name = await InputDialog.getText({ title: `Run ${image}`, label: 'Container name (optional)', placeholder: 'name' });
      if (!name.button.accept) {
        return;
      }
      const cmd = await InputDialog.getText({ title: `Run ${image}`, label: 'Command (optional)', placeholder: 'sleep infinity' });
      if (!cmd.button.accept) {
        return;
      }
      const command = (cmd.value ?? '').trim();
      await requestAPI('containers', {
        method: 'POST',
        body: JSON.stringify({
          image,
          name: (name.value ?? '').trim() || undefined,
          command: command ? command.split(/\s+/) : undefined
        })
      });
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

  const prune = async (what: 'containers' | 'images' | 'volumes') => {
    const text = {
      containers: 'Remove all stopped containers?',
      images: 'Remove all images no container uses?',
      volumes: 'Remove all volumes no container uses?'
    }[what];
    if (!(await confirm(`Prune ${what}`, text, 'Prune'))) {
      return;
    }
    await attempt(`Cannot prune ${what}`, async () => {
      let steps = 0;
      const query = what === 'containers' ? '' : '?all=1';
      await streamAPI<IOperationLine>(`${what}/prune${query}`, line => {
        if (line.status === 'progress') {
          steps++;
          setMessage(`pruning ${what}… ${steps}`);
        } else if (line.status === 'done') {
          const reclaimed = line.result?.SpaceReclaimed ?? 0;
          setMessage(`pruned ${what}: ${humanSize(reclaimed)} reclaimed`);
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
        {shownContainers.map(c => (
          <div className="ps-item" key={c.FullID || c.ID} data-container={c.Names} data-state={c.State}>
            <div className="ps-item-main">
              <span className={`ps-state ps-state-${c.State}`} title={c.State} />
              <span className="ps-name">{c.Names}</span>
              <span className="ps-status">{c.Status}</span>
            </div>
            <div className="ps-item-meta">
              <span title="Image">{c.Image}</span>
              {c.State === 'running' && <span title="Uptime">up {uptime(c.StartedAt)}</span>}
              {c.Ports && <span title="Ports">{c.Ports}</span>}
              {c.GPUs && <span title="GPUs">GPUs: {c.GPUs}</span>}
            </div>
            <div className="ps-item-actions" data-actions-for={c.Names}>
              {c.State === 'running' ? (
                <Action label="Stop" onClick={() => void containerAction(c.Names, 'stop')} />
              ) : (
                <Action label="Start" onClick={() => void containerAction(c.Names, 'start')} />
              )}
              <Action label="Restart" onClick={() => void containerAction(c.Names, 'restart')} />
              <Action label="Logs" onClick={() => showLogs(c.Names)} />
              {c.State === 'running' && <Action label="Terminal" onClick={() => void openTerminal(c.Names)} />}
              <Action label="Remove" danger onClick={() => void removeContainer(c)} />
            </div>
          </div>
        ))}
        {logs && (
          <div className="ps-logs" data-logs-for={logs.name}>
            <header>
              Logs: {logs.name}
              <button className="ps-button" title="Close logs" onClick={() => setLogs(null)}>
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
              <span className="ps-name">{imageName(i)}</span>
              <span className="ps-status">{i.Size}</span>
            </div>
            <div className="ps-item-meta">
              <span className="ps-mono" title="Image ID">{i.ID}</span>
              <span title={i.CreatedAt}>created {i.CreatedSince}</span>
            </div>
            <div className="ps-item-actions">
              <Action label="Run" onClick={() => void runImage(imageName(i))} />
              <Action label="Tag" onClick={() => void tagImage(imageName(i))} />
              <Action label="Remove" danger onClick={() => void removeImage(imageName(i))} />
            </div>
          </div>
        ))}
      </Section>

      <Section title="Volumes" count={volumes.length} onPrune={() => void prune('volumes')}>
        {shownVolumes.map(v => (
          <div className="ps-item" key={v.Name} data-volume={v.Name}>
            <div className="ps-item-main">
              <span className="ps-name">{v.Name}</span>
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
