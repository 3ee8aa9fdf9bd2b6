/*
 * mcap_format.h - the MCAP format's on-disk constants and the rules fleetvault's reader checks.
 * Only src/data/mcap_*.c include it; the public interface is mcap.h.
 *
 * A file (all integers little-endian; strings and arrays: u32 byte length, then the bytes;
 * times: u64 nanoseconds):
 *
 *   magic(8) Header [data records ...] DataEnd [summary] [summary offsets] Footer magic(8)
 *   record = u8 opcode | u64 content length | content
 *
 *   Header     0x01  str profile | str library
 *   Footer     0x02  u64 summary_start | u64 summary_offset_start | u32 summary_crc
 *                    (CRC-32 of the bytes from summary_start up to and including
 *                    summary_offset_start; 0: none). Always 20 bytes: the footer record is
 *                    the file's last 29 + 8 bytes.
 *   Schema     0x03  u16 id | str name | str encoding | u32 len | data
 *   Channel    0x04  u16 id | u16 schema_id | str topic | str message_encoding |
 *                    map<str,str> metadata (u32 byte length, then key/value strings)
 *   Message    0x05  u16 channel_id | u32 sequence | u64 log_time | u64 publish_time | data
 *                    (the rest of the record)
 *   Chunk      0x06  u64 start | u64 end | u64 uncompressed_size | u32 uncompressed_crc |
 *                    str compression ("zstd" or "") | u64 len | records (compressed)
 *   MsgIndex   0x07  u16 channel_id | u32 byte length | (u64 log_time, u64 offset)...
 *                    offset: of a Message record in the chunk's uncompressed records
 *   ChunkIndex 0x08  u64 start | u64 end | u64 chunk_offset | u64 chunk_length |
 *                    u32 byte length, (u16 channel, u64 msg index offset)... |
 *                    u64 msg_index_length | str compression | u64 compressed_size |
 *                    u64 uncompressed_size
 *   Attachment 0x09, AttachmentIndex 0x0A, Metadata 0x0C, MetadataIndex 0x0D: skipped
 *                    (their lengths checked); fleetvault writes none.
 *   Statistics 0x0B  u64 messages | u16 schemas | u32 channels | u32 attachments |
 *                    u32 metadata | u32 chunks | u64 start | u64 end |
 *                    u32 byte length, (u16 channel, u64 count)...
 *   SummaryOff 0x0E  u8 opcode | u64 group_start | u64 group_length
 *   DataEnd    0x0F  u32 CRC-32 of every byte before the Data End record (0: none)
 *
 * Records may grow new fields at their end: the reader ignores bytes past the fields it
 * knows (but never for Message, whose data is the rest of the record, Data End and Footer).
 * Opcodes 0x80-0xFF are private records: skipped. Opcode 0 and unknown 0x10-0x7F: refused.
 *
 * Rules (each failure is FV_ECORRUPT naming the byte offset where it was found):
 *  M1  The file starts and ends with the magic; a Header record follows the first one.
 *  M2  The Footer is the record right before the last magic, opcode 0x02, length 20.
 *  M3  Every record's length fits in what is left of its section (file, chunk, summary).
 *  M4  Every field fits in its record; strings, maps and arrays fit in their record; map
 *      and index arrays are whole entries.
 *  M5  summary_start is 0 or lies after the Header and before the footer;
 *      summary_offset_start is 0 or lies in [summary_start, footer); the summary CRC, if not
 *      0, matches. Without a summary, summary_offset_start is 0 and the CRC is 0 or that of
 *      the footer's 25 bytes before it.
 *  M6  The summary holds only Schema, Channel, Chunk Index, Attachment Index, Metadata
 *      Index, Statistics (and private) records; the summary offset section only Summary
 *      Offset records, each naming a group inside the summary.
 *  M7  Schema ids are not 0; a channel's schema is 0 or a schema seen before it; a message's
 *      channel was seen before it; two records of one id are byte for byte the same.
 *  M8  A chunk index names a Chunk record inside the data section (before summary_start),
 *      whose fields match it (times, sizes, compression); its message index offsets lie
 *      after the chunk and inside the data section.
 *  M9  A chunk's compression is "" or "zstd"; its records decompress to exactly
 *      uncompressed_size bytes (<= FV_MCAP_MAX_CHUNK) whose CRC-32, if not 0, matches; they
 *      hold only Schema, Channel, Message (and private) records, each message's log time
 *      within the chunk's [start, end].
 *  M10 A Message Index follows its chunk (or another Message Index); each entry points at a
 *      Message record of that channel and that log time in the chunk.
 *  M11 Data End, if not 0, matches the CRC-32 of every byte before it; after it only the
 *      summary and summary offset sections and the footer.
 *  M12 When the file has Statistics and is scanned, its counts (messages, chunks, per
 *      channel) and its time range match the data, and its schema and channel counts are
 *      at least those in the data section (writers differ on counting ones registered but
 *      never written); every chunk has a chunk index when the summary has any.
 */
#ifndef FV_DATA_MCAP_FORMAT_H
#define FV_DATA_MCAP_FORMAT_H

#define FV_MCAP_MAGIC     "\x89MCAP0\r\n"
#define FV_MCAP_MAGIC_LEN 8

#define FV_MCAP_OP_HEADER       0x01
#define FV_MCAP_OP_FOOTER       0x02
#define FV_MCAP_OP_SCHEMA       0x03
#define FV_MCAP_OP_CHANNEL      0x04
#define FV_MCAP_OP_MESSAGE      0x05
#define FV_MCAP_OP_CHUNK        0x06
#define FV_MCAP_OP_MSG_INDEX    0x07
#define FV_MCAP_OP_CHUNK_INDEX  0x08
#define FV_MCAP_OP_ATTACHMENT   0x09
#define FV_MCAP_OP_ATTACH_INDEX 0x0A
#define FV_MCAP_OP_STATISTICS   0x0B
#define FV_MCAP_OP_METADATA     0x0C
#define FV_MCAP_OP_META_INDEX   0x0D
#define FV_MCAP_OP_SUMMARY_OFF  0x0E
#define FV_MCAP_OP_DATA_END     0x0F
#define FV_MCAP_OP_PRIVATE      0x80 /* 0x80..0xFF */

#define FV_MCAP_REC_HDR     9  /* opcode + u64 length */
#define FV_MCAP_FOOTER_LEN  20 /* footer content */
#define FV_MCAP_MSG_FIXED   22 /* message fields before its data */
#define FV_MCAP_TRAILER_LEN (FV_MCAP_REC_HDR + FV_MCAP_FOOTER_LEN + FV_MCAP_MAGIC_LEN)

#endif
