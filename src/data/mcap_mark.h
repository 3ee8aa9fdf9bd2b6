/*
 * mcap_mark.h - watermarks a copy of an MCAP clip before it leaves the server for a person
 * (issue 12 item 5): the copy holds every schema, channel and message of the original
 * (channel and schema ids renumbered in order; or only the channels the caller keeps) plus
 * one more channel, topic FV_MCAP_MARK_TOPIC, whose channel metadata holds the watermark's pairs
 * (who it was served to, when, the serve id recorded in the audit log) and whose one message is the
 * same pairs as a JSON object. `fleetvault mcap info FILE` shows the channel with its metadata, so
 * a leaked copy names its serve; the audit log names the serve's principal and clip.
 *
 * Threads: any; no globals.
 */
#ifndef FV_DATA_MCAP_MARK_H
#define FV_DATA_MCAP_MARK_H

#include <stddef.h>

#include "data/mcap.h"
#include "util/buf.h"

#define FV_MCAP_MARK_TOPIC "/fleetvault/watermark"

/* Writes into out (appended; the caller's) the watermarked copy of the MCAP file in
 * [in, in + len), with n pairs keys[i]=vals[i]; keep (NULL: all) chooses the original's
 * channels the copy holds (data/mcap.h fv_mcap_copy). FV_OK, FV_ECORRUPT / FV_ELIMIT (the
 * original is not a readable MCAP file: err names the offset), FV_ENOMEM. */
int fv_mcap_mark(const void *in, size_t len, const char *const *keys, const char *const *vals,
                 size_t n, fv_mcap_keep_fn keep, void *keep_arg, struct fv_buf *out, char *err,
                 size_t errlen);

#endif
