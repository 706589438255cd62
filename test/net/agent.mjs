// A tiny traffic agent that runs inside a test network namespace ("the guest").
// It reads one JSON request per line on stdin and answers one JSON line with the same id.
// Plain ESM JavaScript so `ip netns exec NS node agent.mjs` runs it without a build.
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const servers = [];
const udpInbox = new Map();
const udpSockets = [];
const sockets = new Map();
let nextSid = 1;

function reply(id, body) {
  process.stdout.write(`${JSON.stringify({ id, ...body })}\n`);
}

function listenTcp({ port, host }) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((s) => {
      // Echo server: the peer sees its bytes come back, so a round trip proves both directions.
      s.on('data', (d) => s.write(d));
      s.on('error', () => {});
    });
    srv.once('error', reject);
    srv.listen({ port, host: host ?? '::', ipv6Only: false }, () => {
      servers.push(srv);
      resolve({ ok: true });
    });
  });
}

function connect({ host, port, timeoutMs, localAddress, keep }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ result: 'timeout', ms: Date.now() - started });
    }, timeoutMs ?? 1000);
    s.once('connect', () => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      if (keep) {
        const sid = nextSid++;
        sockets.set(sid, s);
        s.on('error', () => {});
        resolve({ result: 'connected', ms, sid });
      } else {
        s.end();
        resolve({ result: 'connected', ms });
      }
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      resolve({
        result: e.code === 'ECONNREFUSED' ? 'refused' : 'error',
        code: e.code,
        ms: Date.now() - started,
      });
    });
  });
}

function echo({ sid, data, timeoutMs }) {
  return new Promise((resolve) => {
    const s = sockets.get(sid);
    if (!s) return resolve({ result: 'error', code: 'no such socket' });
    let got = '';
    const onData = (d) => {
      got += d.toString();
      if (got.length >= data.length) {
        clearTimeout(timer);
        s.off('data', onData);
        resolve({ result: got === data ? 'echo' : 'garbled' });
      }
    };
    const timer = setTimeout(() => {
      s.off('data', onData);
      resolve({ result: 'timeout' });
    }, timeoutMs ?? 1000);
    s.on('data', onData);
    s.write(data);
  });
}

function listenUdp({ port, host }) {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    udpInbox.set(port, []);
    sock.on('message', (msg, rinfo) =>
      udpInbox.get(port).push({ data: msg.toString(), from: rinfo.address, sport: rinfo.port }),
    );
    sock.once('error', reject);
    sock.bind({ port, address: host ?? '0.0.0.0' }, () => {
      udpSockets.push(sock);
      resolve({ ok: true });
    });
  });
}

function sendUdp({ host, port, localPort, data }) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    sock.once('error', (e) => resolve({ result: 'error', code: e.code }));
    sock.bind({ port: localPort ?? 0 }, () => {
      sock.send(data, port, host, (err) => {
        sock.close();
        resolve(err ? { result: 'error', code: err.code } : { result: 'sent' });
      });
    });
  });
}

const ops = {
  listenTcp,
  connect,
  echo,
  listenUdp,
  sendUdp,
  udpInbox: async ({ port }) => ({ messages: udpInbox.get(port) ?? [] }),
  ping: async () => ({ ok: true }),
};

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch {
    return;
  }
  const op = ops[req.op];
  if (!op) return reply(req.id, { error: `unknown op ${req.op}` });
  try {
    reply(req.id, await op(req));
  } catch (e) {
    reply(req.id, { error: String(e?.message ?? e) });
  }
});
rl.on('close', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
