/*
 * clip_signals.h - the store's signals around a clip's trigger, added to the clip as MCAP
 * channels (issue 12, item 3: "signals around the trigger (from the store) are added as
 * channels"; docs/data-engine.md, "Signal channels").
 *
 * A set of samples is collected (fv_clip_signals_read from the store, or fv_clip_signals_add
 * one by one), then the clip is written again with them (fv_clip_signals_write):
 *  G1 one channel per signal with at least one sample: topic FV_CLIP_SIGNALS_TOPIC NAME, NAME
 *     the signal's name (wire/signals.h fv_signal_label: its number when unnamed), message
 *     encoding "json", schema "fleetvault.signals.NAME" (encoding "jsonschema": an object
 *     whose one property NAME has the JSON type of the signal's values), metadata
 *     source=fleetvault-store, signal=NAME, field=its number; channels in field order;
 *  G2 one message per sample, {"NAME": value}, log and publish time the sample's time (ms
 *     since the epoch, in ns), sequence its index in the channel; messages in time order.
 *     Values: double a number (the fewest digits that read back, util/fmt.h); int, enum,
 *     doors and tires bits an integer; bool true/false; string a string; time "HH:MM:SS"; a
 *     datum without a value (none, invalid, a member this build does not know, a double that
 *     is not finite) is no sample;
 *  G3 location: no signal that reveals a place (wire/places.h: fv_signal_place not
 *     FV_PLACE_NONE) and no value of kind location is ever a sample - the query API serves
 *     those only through the location rules (zones, withheld, coarse) of the reading role,
 *     and a clip goes to labelers and datasets without them;
 *  G4 the written file holds every schema, channel and message of the original (data/mcap.h
 *     fv_mcap_copy), then the signals' schemas, channels and messages, in zstd chunks with
 *     message indexes, chunk indexes, statistics and summary (the MCAP writer's defaults);
 *     an original with attachments or metadata records (which the copy would drop) is not
 *     written again: FV_ESTATE;
 *  G5 at most FV_CLIP_SIGNALS_MAX samples (those after are left out, and counted).
 * Deciding whether to read (purpose, consent, audit) is the caller's (data/clip_server.h).
 *
 * Threads: a set belongs to one thread at a time; the store read follows store/store.h
 * "Threads" (queries from any thread) with the caller's subject key. No globals.
 */
#ifndef FV_DATA_CLIP_SIGNALS_H
#define FV_DATA_CLIP_SIGNALS_H

#include <stddef.h>
#include <stdint.h>

#include "wire/payload.h"

#define FV_CLIP_SIGNALS_TOPIC "/fleetvault/signals/"
#define FV_CLIP_SIGNALS_MAX   (1u << 20) /* samples in one clip */

struct fv_store;
struct fv_clip_signals;

/* A new empty set. FV_OK or FV_ENOMEM. */
int fv_clip_signals_new(struct fv_clip_signals **out);
void fv_clip_signals_free(struct fv_clip_signals *s);

/* Adds one sample of signal field at t_ms (the value is copied): 1 added, 0 left out (G2's
 * no value, G3, G5), FV_ENOMEM. */
int fv_clip_signals_add(struct fv_clip_signals *s, uint32_t field, int64_t t_ms,
                        const struct fv_value *v);

/* Adds the samples of the subject (store pseudonym and data key) with from <= t <= to from
 * the store's frames. A subject the store has nothing of adds nothing. FV_OK, or the store's
 * error (err says which file). */
int fv_clip_signals_read(struct fv_clip_signals *s, struct fv_store *st, const char *pseudo,
                         const unsigned char dek[32], int64_t from, int64_t to, char *err,
                         size_t errlen);

/* Signals with samples (the channels G1 adds), samples, and samples left out by G5. */
size_t fv_clip_signals_count(const struct fv_clip_signals *s);
size_t fv_clip_signals_samples(const struct fv_clip_signals *s);
size_t fv_clip_signals_dropped(const struct fv_clip_signals *s);

/* Writes to out_path (created or truncated, 0600; removed again on error; not fsync'd) the
 * MCAP clip at in_path with the set's channels added (G1-G4); the set's samples are sorted by
 * time on the way. FV_OK; FV_ECORRUPT or FV_ELIMIT (in_path is not MCAP the reader takes: err
 * names the offset); FV_ESTATE (G4: attachments or metadata records); FV_EIO; FV_ENOMEM. */
int fv_clip_signals_write(struct fv_clip_signals *s, const char *in_path, const char *out_path,
                          char *err, size_t errlen);

#endif
