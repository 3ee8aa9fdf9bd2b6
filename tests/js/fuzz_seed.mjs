// fuzz_seed.mjs OUT - a small MCAP file written by @mcap/core (zstd chunks, channel id 0,
// schemas and channels inside chunks), a seed of tests/fuzz/corpus/fuzz_mcap.
import fs from "node:fs";
import { McapWriter, TempBuffer } from "@mcap/core";
import zstd from "@foxglove/wasm-zstd";

await zstd.isLoaded;
const buf = new TempBuffer();
const w = new McapWriter({ writable: buf, chunkSize: 100,
  compressChunk: (d) => ({ compression: "zstd", compressedData: zstd.compress(d, 3) }) });
await w.start({ profile: "", library: "mcap-ts" });
const s = await w.registerSchema({ name: "S", encoding: "jsonschema",
                                   data: new TextEncoder().encode("{}") });
const a = await w.registerChannel({ topic: "/a", messageEncoding: "json", schemaId: s,
                                    metadata: new Map([["k", "v"]]) });
const b = await w.registerChannel({ topic: "/b", messageEncoding: "raw", schemaId: 0,
                                    metadata: new Map() });
for (let i = 0; i < 10; i++)
  await w.addMessage({ channelId: i % 2 ? b : a, sequence: i, logTime: BigInt(i * 1000),
                       publishTime: BigInt(i * 1000), data: new TextEncoder().encode(`{"i":${i}}`) });
await w.end();
fs.writeFileSync(process.argv[2], buf.get());
