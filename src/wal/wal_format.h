/*
 * wal_format.h - on-disk constants of the write-ahead log (docs/formats.md, "WAL"; the
 * validity and recovery rules are in the top comment of wal.c).
 *
 * A WAL is a directory of files named wal-NNNNNNNNNNNNNNNN.log (16 hex digits, increasing).
 *
 * Format 2 (written by this build). Every file starts with a 28-byte header:
 *   0  8  magic "FVWAL\r\n\x1a" (the CR LF and ^Z reveal text-mode mangling, as PNG's do)
 *   8  4  u32 format version (FV_WAL_VERSION)
 *  12  4  u32 salt: random per file, chosen so that an all-zero record header never checks
 *  16  8  u64 the final length of the previous file (number - 1), 0 if none or unknown
 *  24  4  u32 CRC-32C of bytes 0..23
 * followed by records, each a 20-byte record header and a body:
 *   0  4  u32 body length N (0: a sync mark, no body; else 1 <= N <= FV_WAL_MAX_BODY)
 *   4  4  u32 CRC-32C of the body (0 for a sync mark)
 *   8  8  u64 durable offset D: every byte of this file before offset D had been fsync'd when
 *         this record was written (a sync mark: D = the mark's own offset)
 *  16  4  u32 CRC-32C of the file's salt (4 bytes, little-endian) then bytes 0..15 above
 *  20  N  body:
 *         0  1  u8 record type (FV_WAL_REC_*)
 *         1  1  u8 flags (FV_WAL_F_*)
 *         2  8  u64 received_ms (server clock, Unix epoch milliseconds): also the time of
 *                  an event (non-V record) in the store
 *        10  1  u8 device id length (32), then the pseudonym of the record's subject as 32
 *                  lower-case hex characters (crypto/keys.h, rule K2), never the
 *                  certificate's id
 *            1  u8 client type length, then the client type ("vehicle_device")
 *            1  u8 topic length, then the topic ("V", "alerts", ...)
 *            2  u16 txid length, then the txid bytes
 *            4  u32 payload length, then the payload (protobuf, vin = the certificate's
 *               id), sealed when flag FV_WAL_F_SEALED is set: nonce(12) || ciphertext ||
 *               tag(16), associated data = this body with the flags as stored (0x04 set),
 *               the payload length written as 0 and no payload (fv_wal_record_aad)
 * All integers little-endian. The body's parts must add up to exactly N. The salt binds
 * each record header to its file (a stale or copied record, or one a device smuggled inside a
 * payload, does not check); the durable offset lets replay tell a torn write from damage.
 *
 * Format 1 (written before; still read, never written): a 16-byte header (magic, u32
 * version 1, u32 CRC-32C of bytes 0..11) and records of an 8-byte header (u32 N, u32 CRC-32C
 * of the body) and the same body; no salt, no durable offset, no sync marks.
 */
#ifndef FV_WAL_FORMAT_H
#define FV_WAL_FORMAT_H

#define FV_WAL_MAGIC      "FVWAL\r\n\x1a"
#define FV_WAL_MAGIC_LEN  8
#define FV_WAL_VERSION    2u
#define FV_WAL_HEADER_LEN 28
#define FV_WAL_REC_HEAD   20
#define FV_WAL_MAX_BODY   (2u * 1024u * 1024u)

/* Format 1, read only. */
#define FV_WAL_V1            1u
#define FV_WAL_V1_HEADER_LEN 16
#define FV_WAL_V1_REC_HEAD   8

#define FV_WAL_REC_DATA 1 /* a record received from a device (or generated: connectivity) */

#define FV_WAL_F_RESEND    0x01 /* the device marked it is_resend */
#define FV_WAL_F_GENERATED 0x02 /* made by the server (connectivity), not sent by a device */
#define FV_WAL_F_SEALED                                                                            \
    0x04 /* payload sealed with the subject's data key (crypto/keys.h):                            \
          * nonce || AES-256-GCM ciphertext || tag; the associated                                 \
          * data is the body with the payload length 0 and no payload                              \
          * (fv_wal_record_aad) */

#endif
