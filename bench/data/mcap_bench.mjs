// mcap_bench.mjs SECONDS ROUNDS - the same clip and the same measurements as mcap_bench.c,
// with the official TypeScript library (@mcap/core, zstd through @foxglove/wasm-zstd at level 3,
// 768 KiB chunks, its default indexes and summary). Prints one JSON line.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const js = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../tests/js/");
const require = createRequire(js);
const { McapIndexedReader, McapWriter, TempBuffer } = await import(
  require.resolve("@mcap/core"));
const zstd = require("@foxglove/wasm-zstd");
await zstd.isLoaded;

const secs = Number(process.argv[2] ?? 60), rounds = Number(process.argv[3] ?? 3);
const T0 = 1700000000000000000n;
let seed = 12345;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16);
const msgs = [];
let payload = 0;
for (let i = 0; i < secs * 100; i++) {
  const t = T0 + BigInt(i) * 10000000n;
  const lens = [48, 8, i % 5 === 0 ? 24000 : 0];
  for (let c = 0; c < 3; c++) {
    if (!lens[c]) continue;
    const d = new Uint8Array(lens[c]);
    for (let b = 0; b < d.length; b++) d[b] = c === 2 && b % 97 < 60 ? (b >> 4) & 255 : rnd() & 255;
    msgs.push({ ch: c, seq: i, t, d });
    payload += d.length;
  }
}
let bestW = Infinity, bestR = Infinity, fileBytes = 0;
for (let r = 0; r < rounds; r++) {
  const buf = new TempBuffer();
  let t0 = process.hrtime.bigint();
  const w = new McapWriter({ writable: buf, chunkSize: 768 * 1024,
    compressChunk: (d) => ({ compression: "zstd", compressedData: zstd.compress(d, 3) }) });
  await w.start({ profile: "", library: "bench" });
  const ids = [];
  for (const topic of ["/imu", "/can", "/cam/front"])
    ids.push(await w.registerChannel({ topic, messageEncoding: "raw", schemaId: 0,
                                       metadata: new Map() }));
  for (const m of msgs)
    await w.addMessage({ channelId: ids[m.ch], sequence: m.seq, logTime: m.t, publishTime: m.t,
                         data: m.d });
  await w.end();
  const ws = Number(process.hrtime.bigint() - t0) / 1e9;
  const bytes = buf.get();
  fileBytes = bytes.length;
  t0 = process.hrtime.bigint();
  const rd = await McapIndexedReader.Initialize({ readable: new TempBuffer(bytes),
    decompressHandlers: { zstd: (d, size) => zstd.decompress(d, Number(size)) } });
  let got = 0;
  for await (const m of rd.readMessages()) got += m.data.length;
  const rs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (got !== payload) throw new Error(`read ${got} bytes of ${payload}`);
  bestW = Math.min(bestW, ws);
  bestR = Math.min(bestR, rs);
}
console.log(JSON.stringify({ impl: "mcap-ts", messages: msgs.length, payload_bytes: payload,
  file_bytes: fileBytes, write_s: +bestW.toFixed(4), read_s: +bestR.toFixed(4),
  write_mb_s: +(payload / 1e6 / bestW).toFixed(1), read_mb_s: +(payload / 1e6 / bestR).toFixed(1) }));
