// Connection flood: N WebSockets (sip subprotocol) from many 127/8 sources, held H ms, closed.
// usage: node flood.js URL N HOLD_MS
const WebSocket = require(require('node:path').join(__dirname, '../../../tests/node_modules/ws'));
const [url, n, hold] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] || 3000)];
(async () => {
  const socks = [];
  let ok = 0, bad = 0;
  const batch = 200;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => new Promise((res) => {
      const k = i + j;
      const ws = new WebSocket(url, ['sip'], { localAddress: `127.9.${(k >> 8) & 255}.${(k & 255) || 1}` });
      ws.on('open', () => { ok++; socks.push(ws); res(); });
      ws.on('error', () => { bad++; res(); });
    })));
  }
  console.log(`open ${ok}, refused ${bad}`);
  await new Promise((r) => setTimeout(r, hold));
  for (const s of socks) s.terminate();
  await new Promise((r) => setTimeout(r, 500));
  console.log('closed');
})();
