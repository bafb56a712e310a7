// The reference for `bench chat`: a broadcast server on the npm `ws` package that speaks the
// part of Potok's realtime protocol the benchmark uses (docs/realtime.md): `subscribe` answers
// `subscribed`, `send` answers `ack` and relays an `event` frame of the same shape as Potok's
// to every subscriber of the channel. It only relays: no database, no checks, no accounts (any
// bearer token is the user "bench"). Binds 127.0.0.1 on a free port and prints
// `listening 127.0.0.1:PORT`; exits when stdin closes.
import { randomUUID } from 'node:crypto';
import { WebSocketServer } from 'ws';

const rooms = new Map(); // channel -> { seq, subs: Set<WebSocket> }
const room = (channel) => {
  let r = rooms.get(channel);
  if (!r) {
    r = { seq: 0, subs: new Set() };
    rooms.set(channel, r);
  }
  return r;
};

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  path: '/api/v1/realtime',
  maxPayload: 4096,
  clientTracking: false,
});

wss.on('connection', (ws, req) => {
  const user = req.headers.authorization ? 'bench' : null;
  const joined = new Set();
  ws.send(JSON.stringify({ type: 'hello', user }));
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.close(1003, 'binary frames are not accepted');
      return;
    }
    let f;
    try {
      f = JSON.parse(data.toString());
    } catch {
      ws.send(JSON.stringify({ type: 'error', ref: null, code: 'VALIDATION_FAILED', message: 'not JSON' }));
      return;
    }
    if (f.type === 'subscribe' && typeof f.channel === 'string') {
      const r = room(f.channel);
      r.subs.add(ws);
      joined.add(r);
      ws.send(JSON.stringify({
        type: 'subscribed', channel: f.channel, offset: r.seq, history: [], present: r.subs.size,
      }));
    } else if (f.type === 'send' && typeof f.channel === 'string' && typeof f.text === 'string') {
      if (!user) {
        ws.send(JSON.stringify({ type: 'error', ref: f.ref ?? null, code: 'UNAUTHORIZED', message: 'sign in to write' }));
        return;
      }
      const r = room(f.channel);
      r.seq += 1;
      const id = randomUUID();
      const message = {
        id,
        room_id: f.channel.slice('chat:'.length),
        seq: r.seq,
        user_id: 'bench',
        username: user,
        content: { text: f.text, emojis: [], mentions: [], links: [] },
        timestamp: Date.now(),
        platform: 'potok',
        is_moderated: false,
        moderation_reason: null,
        reactions: [],
        is_highlighted: false,
        is_donation_message: false,
        donation_amount: null,
        edited_at: null,
      };
      // Serialized once, sent to everyone as a text frame (the `ws` broadcast idiom).
      const frame = Buffer.from(JSON.stringify({
        type: 'event', channel: f.channel, offset: r.seq, data: { kind: 'message', message },
      }));
      for (const sub of r.subs) {
        if (sub.readyState === 1) sub.send(frame, { binary: false });
      }
      ws.send(JSON.stringify({ type: 'ack', ref: f.ref ?? null, offset: r.seq, id }));
    } else if (f.type === 'ping') {
      ws.send(JSON.stringify({ type: 'pong', ref: f.ref ?? null }));
    }
  });
  ws.on('close', () => {
    for (const r of joined) r.subs.delete(ws);
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  const { address, port } = wss.address();
  process.stdout.write(`listening ${address}:${port}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
