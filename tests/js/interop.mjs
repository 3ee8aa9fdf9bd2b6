// interop.mjs - fleetvault's MCAP writer and reader (src/data/mcap.h, through `fleetvault mcap`)
// against the official TypeScript library (@mcap/core from npm), both ways:
//
//   fleetvault writes (zstd, uncompressed, small chunks, no summary) -> @mcap/core reads it
//     with its indexed reader (channels, schemas, statistics, chunk indexes compared with what
//     fleetvault's reader reports; every message, and one channel in a time window, which the
//     library finds through our chunk and message indexes) and with its stream reader (every
//     record, CRCs checked);
//   fleetvault adds signal channels to a clip (`mcap signals`, data/clip_signals.h, as the clip
//     endpoint adds the store's) -> @mcap/core's indexed reader: the original's channels and
//     messages unchanged, the signals' channels, schemas and messages, indexes and statistics;
//   @mcap/core writes (zstd chunks with indexes, zstd chunks without any index or summary
//     extras, uncompressed chunks, no chunks) -> `fleetvault mcap verify` (the linear scan,
//     rules M1-M12), `info` (compared with the library's own view), `cat` (every message, and
//     one channel in a time window through the chunk indexes).
//
// Usage: node interop.mjs FLEETVAULT_BINARY   (tests/js/run_interop.sh sets it up for ctest)
// Prints "mcap interop: N passed, 0 failed" or throws naming the first difference.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { McapIndexedReader, McapStreamReader, McapWriter, TempBuffer } from "@mcap/core";
import zstd from "@foxglove/wasm-zstd";

const BIN = process.argv[2] ?? process.env.FV_BIN;
if (!BIN) throw new Error("usage: node interop.mjs FLEETVAULT_BINARY");
await zstd.isLoaded;
const decompressHandlers = {
  zstd: (data, size) => new Uint8Array(zstd.decompress(data, Number(size))),
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fv-mcap-interop-"));
let passed = 0;
const check = (name) => {
  passed++;
  console.log(`ok ${passed} - ${name}`);
};

// ---- the clip: 3 sensors over 10 s (IMU 100 Hz, CAN 50 Hz, a camera 5 Hz with 24 KB frames)
const T0 = 1700000000000000000n;
const MS = 1000000n;
const enc = new TextEncoder();
const hex = (u8) => Buffer.from(u8).toString("hex");

function makeClip() {
  const schemas = [
    { name: "fv.Imu", encoding: "jsonschema", data: enc.encode('{"type":"object"}') },
    { name: "fv.Frame", encoding: "", data: new Uint8Array(0) },
  ];
  const channels = [
    { topic: "/imu", messageEncoding: "json", schema: 0, metadata: { sensor: "imu0", hz: "100" } },
    { topic: "/can", messageEncoding: "cbor", schema: -1, metadata: {} },
    { topic: "/cam/front", messageEncoding: "raw", schema: 1, metadata: { sensor: "cam0" } },
  ];
  const messages = [];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let i = 0; i < 1000; i++) {
    const t = T0 + BigInt(i) * 10n * MS;
    const ax = (Math.sin(i / 10) * 9.81).toFixed(4);
    messages.push({ ch: 0, sequence: i, logTime: t, publishTime: t + 250000n,
                    data: enc.encode(`{"ax":${ax},"ay":0.01,"az":9.81,"i":${i}}`) });
    if (i % 2 === 0) {
      const can = new Uint8Array(8);
      for (let b = 0; b < 8; b++) can[b] = (i * 7 + b * 13) & 255;
      messages.push({ ch: 1, sequence: i / 2, logTime: t, publishTime: t, data: can });
    }
    if (i % 20 === 0) {
      const frame = new Uint8Array(24000);
      for (let b = 0; b < frame.length; b++) frame[b] = b % 97 < 60 ? (b >> 4) & 255 : rnd() & 255;
      messages.push({ ch: 2, sequence: i / 20, logTime: t, publishTime: t, data: frame });
    }
  }
  return { schemas, channels, messages };
}
const clip = makeClip();

// Messages as comparable rows, sorted by time, then topic.
const rows = (list) =>
  list
    .map((m) => `${m.logTime} ${m.topic} ${m.sequence} ${m.publishTime} ${hex(m.data)}`)
    .sort();
const expectedRows = (filter = () => true) =>
  rows(clip.messages.filter(filter).map((m) => ({ ...m, topic: clip.channels[m.ch].topic })));

function run(args, input) {
  const r = spawnSync(BIN, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0)
    throw new Error(`fleetvault ${args.join(" ")}: exit ${r.status}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}
const catRows = (file, info, extra = []) => {
  const topic = new Map(info.channels.map((c) => [c.id, c.topic]));
  return rows(
    run(["mcap", "cat", file, ...extra])
      .split("\n")
      .filter((l) => l)
      .map((l) => JSON.parse(l))
      .map((m) => ({ logTime: BigInt(m.log_time), publishTime: BigInt(m.publish_time),
                     topic: topic.get(m.channel), sequence: m.sequence,
                     data: Buffer.from(m.data_hex, "hex") })),
  );
};

// The library's view of channels and schemas, by topic.
function tsChannels(channelsById, schemasById) {
  return [...channelsById.values()]
    .map((c) => {
      const s = schemasById.get(c.schemaId);
      return JSON.stringify({ topic: c.topic, enc: c.messageEncoding,
                              schema: s ? [s.name, s.encoding, hex(s.data)] : null,
                              meta: Object.fromEntries([...c.metadata].sort()) });
    })
    .sort();
}
function fvChannels(info) {
  const schemas = new Map(info.schemas.map((s) => [s.id, s]));
  return info.channels
    .map((c) => {
      const s = schemas.get(c.schema_id);
      return JSON.stringify({ topic: c.topic, enc: c.message_encoding,
                              schema: s ? [s.name, s.encoding, s.data_hex] : null,
                              meta: Object.fromEntries(Object.entries(c.metadata).sort()) });
    })
    .sort();
}
function expectedChannels() {
  return clip.channels
    .map((c) => {
      const s = clip.schemas[c.schema];
      return JSON.stringify({ topic: c.topic, enc: c.messageEncoding,
                              schema: s ? [s.name, s.encoding, hex(s.data)] : null,
                              meta: Object.fromEntries(Object.entries(c.metadata).sort()) });
    })
    .sort();
}

// Chunk indexes and statistics: the library's records against fleetvault's `info`.
function compareIndexes(reader, info, what) {
  const ts = reader.chunkIndexes.map((c) => ({
    message_start_time: String(c.messageStartTime), message_end_time: String(c.messageEndTime),
    chunk_start_offset: String(c.chunkStartOffset), chunk_length: String(c.chunkLength),
    message_index_offsets: Object.fromEntries(
      [...c.messageIndexOffsets].map(([k, v]) => [String(k), String(v)])),
    message_index_length: String(c.messageIndexLength), compression: c.compression,
    compressed_size: String(c.compressedSize), uncompressed_size: String(c.uncompressedSize),
  }));
  assert.deepEqual(info.chunk_indexes, ts, `${what}: chunk indexes`);
  const s = reader.statistics;
  assert.ok(s && info.statistics, `${what}: statistics present`);
  assert.deepEqual(info.statistics, {
    message_count: String(s.messageCount), schema_count: s.schemaCount,
    channel_count: s.channelCount, attachment_count: s.attachmentCount,
    metadata_count: s.metadataCount, chunk_count: s.chunkCount,
    message_start_time: String(s.messageStartTime), message_end_time: String(s.messageEndTime),
    channel_message_counts: Object.fromEntries(
      [...s.channelMessageCounts].map(([k, v]) => [String(k), String(v)])),
  }, `${what}: statistics`);
}

// One channel in a time window: 2.0 s .. 3.0 s of /can.
const WIN = { start: T0 + 2000n * MS, end: T0 + 3000n * MS };
const inWindow = (m) => clip.channels[m.ch].topic === "/can" && m.logTime >= WIN.start &&
                        m.logTime <= WIN.end;

// ---- 1. fleetvault writes, @mcap/core reads ------------------------------------------------
function jsonl() {
  const lines = [];
  for (const s of clip.schemas)
    lines.push({ schema: { name: s.name, encoding: s.encoding, data_hex: hex(s.data) } });
  for (const c of clip.channels)
    lines.push({ channel: { topic: c.topic, message_encoding: c.messageEncoding,
                            schema_id: c.schema + 1, metadata: c.metadata } });
  for (const m of clip.messages)
    lines.push({ message: { channel: m.ch + 1, sequence: m.sequence, log_time: String(m.logTime),
                            publish_time: String(m.publishTime), data_hex: hex(m.data) } });
  return lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
}
const input = jsonl();

for (const [name, args] of [
  ["zstd, default chunks", []],
  ["zstd, 64 KiB chunks", ["--chunk-size", "65536"]],
  ["uncompressed, 100 KB chunks", ["--compression", "none", "--chunk-size", "100000"]],
  ["no summary", ["--no-summary", "--chunk-size", "65536"]],
]) {
  const file = path.join(dir, `fv-${passed}.mcap`);
  run(["mcap", "write", file, ...args], input);
  const bytes = fs.readFileSync(file);
  const what = `fleetvault -> @mcap/core (${name})`;

  // The stream reader: every record in order, chunk CRCs checked.
  const stream = new McapStreamReader({ decompressHandlers, validateCrcs: true });
  stream.append(bytes);
  const channels = new Map(), schemas = new Map(), msgs = [];
  let footer = false, dataEnd = false, msgIndexes = 0;
  for (let r; (r = stream.nextRecord()); ) {
    if (r.type === "Channel") channels.set(r.id, r);
    else if (r.type === "Schema") schemas.set(r.id, r);
    else if (r.type === "Message") msgs.push({ ...r, topic: channels.get(r.channelId).topic });
    else if (r.type === "Footer") footer = true;
    else if (r.type === "DataEnd") dataEnd = true;
    else if (r.type === "MessageIndex") msgIndexes++;
  }
  assert.ok(stream.done() && footer && dataEnd, `${what}: stream reader reached the footer`);
  assert.ok(msgIndexes > 0, `${what}: message indexes`);
  assert.deepEqual(tsChannels(channels, schemas), expectedChannels(), `${what}: channels`);
  assert.deepEqual(rows(msgs), expectedRows(), `${what}: messages (stream reader)`);
  check(`${what}: stream reader`);
  if (args.includes("--no-summary")) continue;

  // The indexed reader: the summary, then messages through chunk and message indexes.
  const reader = await McapIndexedReader.Initialize({ readable: new TempBuffer(bytes),
                                                      decompressHandlers });
  assert.equal(reader.header.library, "fleetvault");
  assert.deepEqual(tsChannels(reader.channelsById, reader.schemasById), expectedChannels(),
                   `${what}: summary channels`);
  const st = reader.statistics;
  assert.equal(st.messageCount, BigInt(clip.messages.length), `${what}: message count`);
  assert.equal(st.messageStartTime, T0);
  assert.equal(st.messageEndTime, T0 + 999n * 10n * MS);
  assert.equal(st.chunkCount, reader.chunkIndexes.length);
  assert.ok(reader.chunkIndexes.length >= (args.length ? 10 : 2), `${what}: several chunks`);
  for (const c of reader.chunkIndexes) {
    assert.equal(c.compression, args.includes("none") ? "" : "zstd");
    assert.ok(c.messageIndexOffsets.size >= 1);
  }
  const byTopic = new Map([...reader.channelsById.values()].map((c) => [c.topic, c.id]));
  for (const [i, c] of clip.channels.entries()) {
    const n = clip.messages.filter((m) => m.ch === i).length;
    assert.equal(st.channelMessageCounts.get(byTopic.get(c.topic)), BigInt(n));
  }
  compareIndexes(reader, JSON.parse(run(["mcap", "info", file])), what);
  const all = [];
  for await (const m of reader.readMessages())
    all.push({ ...m, topic: reader.channelsById.get(m.channelId).topic });
  assert.deepEqual(rows(all), expectedRows(), `${what}: messages (indexed reader)`);
  const some = [];
  for await (const m of reader.readMessages({ topics: ["/can"], startTime: WIN.start,
                                              endTime: WIN.end }))
    some.push({ ...m, topic: "/can" });
  assert.deepEqual(rows(some), expectedRows(inWindow), `${what}: /can in a window`);
  check(`${what}: indexed reader, statistics and chunk indexes`);
}

// ---- 1b. the clip with stored signals added (`mcap signals`, as the clip endpoint adds the
// store's: data/clip_signals.h) -> @mcap/core: the original's channels and messages unchanged,
// one JSON channel per signal, the location left out; summary, indexes and statistics agree.
{
  const orig = path.join(dir, "fv-orig.mcap"), file = path.join(dir, "fv-signals.mcap");
  run(["mcap", "write", orig], input);
  const T0MS = T0 / MS;
  const samples = [];
  for (let i = 0; i < 50; i++) // values never integral: JSON has no 50.0 for a double
    samples.push({ signal: "Soc", t_ms: Number(T0MS) + i * 200, value: 50.0625 + i / 8 });
  samples.push({ signal: "Gear", t_ms: Number(T0MS) + 1000, value: 4 });
  samples.push({ signal: "Locked", t_ms: Number(T0MS) + 1500, value: true });
  samples.push({ signal: "Location", t_ms: Number(T0MS) + 1500, value: "(48.1 N, 11.5 E)" });
  const out = run(["mcap", "signals", orig, file],
                  samples.map((x) => JSON.stringify(x)).join("\n") + "\n");
  assert.match(out, /3 signals, 52 samples added \(1 left out/);
  const what = "fleetvault with signal channels -> @mcap/core";
  const reader = await McapIndexedReader.Initialize({
    readable: new TempBuffer(fs.readFileSync(file)), decompressHandlers });
  const sigTopics = ["Gear", "Locked", "Soc"].map((n) => `/fleetvault/signals/${n}`);
  const topics = [...reader.channelsById.values()].map((c) => c.topic);
  assert.deepEqual(topics.slice(0, 3), clip.channels.map((c) => c.topic), `${what}: channels`);
  assert.deepEqual(topics.slice(3).sort(), sigTopics, `${what}: signal channels`);
  const soc = [...reader.channelsById.values()].find((c) => c.topic === sigTopics[2]);
  assert.equal(soc.messageEncoding, "json");
  assert.equal(soc.metadata.get("signal"), "Soc");
  const schema = reader.schemasById.get(soc.schemaId);
  assert.equal(schema.encoding, "jsonschema");
  assert.deepEqual(JSON.parse(new TextDecoder().decode(schema.data)).properties,
                   { Soc: { type: "number" } }, `${what}: schema`);
  compareIndexes(reader, JSON.parse(run(["mcap", "info", file])), what);
  assert.equal(reader.statistics.messageCount, BigInt(clip.messages.length + 52));
  const orig_ = [], sig = [];
  for await (const m of reader.readMessages()) {
    const topic = reader.channelsById.get(m.channelId).topic;
    (topic.startsWith("/fleetvault/") ? sig : orig_).push({ ...m, topic });
  }
  assert.deepEqual(rows(orig_), expectedRows(), `${what}: the original's messages`);
  const socs = sig.filter((m) => m.topic === sigTopics[2]);
  assert.equal(socs.length, 50);
  socs.forEach((m, i) => {
    assert.equal(m.logTime, T0 + BigInt(i) * 200n * MS);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(m.data)), { Soc: 50.0625 + i / 8 });
  });
  const win = [];
  for await (const m of reader.readMessages({ topics: [sigTopics[2]], startTime: T0 + 1000n * MS,
                                              endTime: T0 + 2000n * MS }))
    win.push(m);
  assert.equal(win.length, 6, `${what}: Soc in a window`);
  check(`${what}: indexed reader, statistics and chunk indexes`);
}

// ---- 2. @mcap/core writes, fleetvault reads ------------------------------------------------
const zstdChunk = (data) => ({ compression: "zstd", compressedData: zstd.compress(data, 3) });
for (const [name, opts, indexed] of [
  ["zstd chunks with indexes", { compressChunk: zstdChunk, chunkSize: 65536 }, true],
  ["zstd chunks without indexes, statistics or summary offsets",
   { compressChunk: zstdChunk, chunkSize: 65536, useChunkIndex: false, useMessageIndex: false,
     useStatistics: false, useSummaryOffsets: false, repeatChannels: false,
     repeatSchemas: false }, false],
  ["uncompressed chunks with indexes", { chunkSize: 200000 }, true],
  ["no chunks", { useChunks: false }, false],
]) {
  const what = `@mcap/core -> fleetvault (${name})`;
  const buf = new TempBuffer();
  const w = new McapWriter({ writable: buf, ...opts });
  await w.start({ profile: "", library: "mcap-ts-interop" });
  const sids = [];
  for (const s of clip.schemas) sids.push(await w.registerSchema(s));
  const cids = [];
  for (const c of clip.channels)
    cids.push(await w.registerChannel({ topic: c.topic, messageEncoding: c.messageEncoding,
                                        schemaId: c.schema < 0 ? 0 : sids[c.schema],
                                        metadata: new Map(Object.entries(c.metadata)) }));
  for (const m of clip.messages)
    await w.addMessage({ channelId: cids[m.ch], sequence: m.sequence, logTime: m.logTime,
                         publishTime: m.publishTime, data: m.data });
  await w.end();
  const file = path.join(dir, `ts-${passed}.mcap`);
  const bytes = buf.get();
  fs.writeFileSync(file, bytes);

  assert.match(run(["mcap", "verify", file]),
               new RegExp(`ok: ${clip.messages.length} messages, 3 channels`), `${what}: verify`);
  const info = JSON.parse(run(["mcap", "info", file]));
  assert.equal(info.library, "mcap-ts-interop");
  assert.equal(info.indexed, indexed, `${what}: indexed`);
  assert.deepEqual(fvChannels(info), expectedChannels(), `${what}: channels`);
  if (indexed) {
    const reader = await McapIndexedReader.Initialize({ readable: new TempBuffer(bytes),
                                                        decompressHandlers });
    compareIndexes(reader, info, what);
  }
  assert.deepEqual(catRows(file, info), expectedRows(), `${what}: messages`);
  assert.deepEqual(catRows(file, info, ["--topic", "/can", "--start", String(WIN.start),
                                        "--end", String(WIN.end)]),
                   expectedRows(inWindow), `${what}: /can in a window`);
  check(what);
}

// ---- 3. a damaged file written by the library is refused with its offset --------------------
{
  const buf = new TempBuffer();
  const w = new McapWriter({ writable: buf, compressChunk: zstdChunk });
  await w.start({ profile: "", library: "mcap-ts-interop" });
  const c = await w.registerChannel({ topic: "/x", messageEncoding: "raw", schemaId: 0,
                                      metadata: new Map() });
  for (let i = 0; i < 100; i++)
    await w.addMessage({ channelId: c, sequence: i, logTime: BigInt(i), publishTime: BigInt(i),
                         data: enc.encode(`message ${i}`) });
  await w.end();
  const bytes = Buffer.from(buf.get());
  const reader = await McapIndexedReader.Initialize({ readable: new TempBuffer(bytes),
                                                      decompressHandlers });
  const ci = reader.chunkIndexes[0];
  const at = Number(ci.chunkStartOffset + ci.chunkLength) - 5; // inside the compressed records
  bytes[at] ^= 0xff;
  const file = path.join(dir, "ts-damaged.mcap");
  fs.writeFileSync(file, bytes);
  const r = spawnSync(BIN, ["mcap", "cat", file]);
  assert.equal(r.status, 1, "damaged: refused");
  const m = /mcap: byte (\d+): /.exec(r.stderr.toString());
  assert.ok(m, `damaged: the error names an offset: ${r.stderr}`);
  assert.ok(Number(m[1]) >= Number(ci.chunkStartOffset) && Number(m[1]) <= at,
            `damaged: offset ${m[1]} inside the chunk`);
  check("a damaged chunk written by @mcap/core is refused by fleetvault with its offset");
}

fs.rmSync(dir, { recursive: true, force: true });
console.log(`mcap interop: ${passed} passed, 0 failed`);
