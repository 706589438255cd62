import '@xterm/xterm/css/xterm.css';
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'react';
import { Link, useParams } from 'react-router';
import { ApiError, get, post } from '../api';
import { dropDetachedSheets, routeStyleTextToCssom } from '../csp-styles';
import { ErrorBox, Page, Progress } from '../ui';

const COLS = 80;
const ROWS = 24;

type State = { phase: 'connecting' } | { phase: 'open' } | { phase: 'closed'; why: string };

/**
 * Project → Compute → Instances → Console: the server's serial console in
 * xterm.js over the console WebSocket (docs/console.md). The page trades its
 * CSRF-checked session for a single-use ticket and offers it as a
 * subprotocol; the daemon records every session, and says so here.
 */
export function ConsolePage() {
  const { id = '' } = useParams();
  const box = useRef<HTMLElement>(null);
  const [name, setName] = useState(id);
  const [state, setState] = useState<State>({ phase: 'connecting' });
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    routeStyleTextToCssom();
    const term = new Terminal({ cols: COLS, rows: ROWS, convertEol: false, cursorBlink: false });
    term.open(box.current!);
    let ws: WebSocket | null = null;
    let live = true;
    (async () => {
      const server = await get<{ server: { name: string } }>(`/compute/v2.1/servers/${id}`);
      if (live) setName(server.server.name);
      const { ticket } = await post<{ ticket: string }>(`/bulwark/v1/servers/${id}/console/tickets`);
      if (!live) return;
      const url = `wss://${location.host}/bulwark/v1/servers/${id}/console?cols=${COLS}&rows=${ROWS}`;
      ws = new WebSocket(url, ['bulwark.console', `bulwark.ticket.${ticket}`]);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => {
        setState({ phase: 'open' });
        term.focus();
      };
      ws.onmessage = (m) => term.write(new Uint8Array(m.data as ArrayBuffer));
      ws.onclose = (c) =>
        setState({
          phase: 'closed',
          why:
            c.reason || (c.code === 1006 ? 'the daemon refused or dropped the connection' : `code ${c.code}`),
        });
      const enc = new TextEncoder();
      term.onData((d) => ws?.readyState === WebSocket.OPEN && ws.send(enc.encode(d)));
    })().catch((e: unknown) => {
      if (!live) return;
      setError(e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : String(e));
      setState({ phase: 'closed', why: 'the console could not be opened' });
    });
    return () => {
      live = false;
      ws?.close();
      term.dispose();
      dropDetachedSheets();
    };
  }, [id]);

  return (
    <Page title={`Console: ${name}`}>
      <p className="recording" role="note">
        <strong>This session is recorded.</strong> Everything typed and shown here is kept, encrypted, with
        your user name, for administrators to replay. Recording cannot be turned off.
      </p>
      {state.phase === 'connecting' && <Progress label="Connecting to the serial console" />}
      <p role="status">
        {state.phase === 'open'
          ? 'Connected. Click the terminal and type; press Enter if no prompt shows.'
          : state.phase === 'closed'
            ? `Disconnected: ${state.why}.`
            : ''}
      </p>
      <ErrorBox error={error} />
      <section className="terminal" ref={box} aria-label={`Serial console of ${name}`} />
      <p>
        <Link to={`/project/compute/instances/${id}`}>Back to the instance</Link>
      </p>
    </Page>
  );
}
