/**
 * Talking to the portside server extension.
 *
 * `requestAPI<T>()` sends one request under `<base_url>portside/api/` with the server's token and
 * XSRF header (ServerConnection adds both) and returns the parsed JSON; an error answer becomes an
 * `APIError` carrying the server's `{code, message, type}`. `streamAPI()` reads a
 * newline-delimited JSON stream (events, followed logs, prune progress) item by item.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IErrorBody } from './types';

/** An error answered by the API. */
export class APIError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly type: string
  ) {
    super(message);
  }
}

function apiUrl(endPoint: string, settings: ServerConnection.ISettings): string {
  return URLExt.join(settings.baseUrl, 'portside', 'api', endPoint);
}

async function send(endPoint: string, init: RequestInit): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(apiUrl(endPoint, settings), init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  if (!response.ok) {
    const text = await response.text();
    let body: Partial<IErrorBody> = {};
    try {
      body = JSON.parse(text);
    } catch {
      body = { message: text || response.statusText };
    }
    throw new APIError(body.message ?? response.statusText, response.status, body.type ?? '');
  }
  return response;
}

/**
 * Call the portside REST API.
 *
 * @param endPoint - path under `portside/api/`, e.g. `containers/web/stop?t=5`
 * @param init - fetch options (method, body)
 * @returns the parsed JSON answer (undefined for 204)
 * @throws APIError with the server's code and message
 */
export async function requestAPI<T>(endPoint = '', init: RequestInit = {}): Promise<T> {
  const response = await send(endPoint, init);
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/**
 * Read a newline-delimited JSON stream, calling `onItem` for each object as it arrives.
 *
 * Resolves when the server ends the stream; abort it with `init.signal`.
 */
export async function streamAPI<T>(
  endPoint: string,
  onItem: (item: T) => void,
  init: RequestInit = {}
): Promise<void> {
  const response = await send(endPoint, init);
  if (!response.body) {
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    buffer += decoder.decode(value, { stream: true });
    let newline = buffer.indexOf('\n');
    while (newline >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) {
        onItem(JSON.parse(line) as T);
      }
      newline = buffer.indexOf('\n');
    }
  }
}

/** A name as one path segment (`example/box:1` -> `example%2Fbox%3A1`). */
export function segment(name: string): string {
  return encodeURIComponent(name);
}
