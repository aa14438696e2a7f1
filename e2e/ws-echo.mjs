// A WebSocket echo server for the gateway-mode e2e: the shop's "live" socket (a seat map, say),
// reached by the browser through queuegate's tunnel and nginx. Node's own http and crypto, no
// package: the RFC 6455 handshake, then every text or binary message comes back as it was sent;
// a close is answered and the socket ended. One message per frame (no fragmentation), which is
// what a browser sends for short messages.
//
// Usage: node e2e/ws-echo.mjs PORT   (listens on 127.0.0.1:PORT until killed)

import { createHash } from 'node:crypto';
import { createServer } from 'node:http';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node e2e/ws-echo.mjs PORT');
  process.exit(2);
}

/** One unmasked server frame (FIN set) of `opcode` carrying `payload`. */
function frame(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n])
    : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 0xff])
      : Buffer.concat([Buffer.from([0x80 | opcode, 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
  return Buffer.concat([head, payload]);
}

const server = createServer((req, res) => {
  res.writeHead(426, { upgrade: 'websocket', 'content-type': 'text/plain' });
  res.end('websocket only\n');
});

server.on('upgrade', (req, socket) => {
  const key = req.headers['sec-websocket-key'];
  if ((req.headers.upgrade || '').toLowerCase() !== 'websocket' || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(key + GUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
    + `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      if (pending.length < 2) return;
      const opcode = pending[0] & 0x0f;
      let len = pending[1] & 0x7f;
      let at = 2;
      if (len === 126) { if (pending.length < 4) return; len = pending.readUInt16BE(2); at = 4; }
      else if (len === 127) { if (pending.length < 10) return; len = Number(pending.readBigUInt64BE(2)); at = 10; }
      const masked = (pending[1] & 0x80) !== 0;
      const mask = masked ? pending.subarray(at, at + 4) : null;
      if (masked) at += 4;
      if (pending.length < at + len) return;
      const payload = Buffer.from(pending.subarray(at, at + len));
      if (mask) for (let i = 0; i < payload.length; i += 1) payload[i] ^= mask[i % 4];
      pending = pending.subarray(at + len);
      if (opcode === 0x8) { socket.end(frame(0x8, payload.subarray(0, 2))); return; }
      if (opcode === 0x9) socket.write(frame(0xa, payload)); // ping → pong
      else if (opcode === 0x1 || opcode === 0x2) socket.write(frame(opcode, payload));
    }
  });
  socket.on('error', () => socket.destroy());
});

server.listen(port, '127.0.0.1', () => console.log(`ws-echo listening on 127.0.0.1:${port}`));
