/* fuzz_trigger.c - libFuzzer target: the trigger language (src/data/trigger.h).
 *
 * Input: the text up to the first NUL byte is compiled (with the fleet's signal names); the
 * bytes after it, if the text compiled, drive the evaluator: each group of 3 bytes sets one
 * slot (byte 0 % slots) to a number (byte 1 - 128), a string (byte 1 odd, when byte 2 is
 * odd) or no value, and every group is followed by a step whose time advances by byte 2 x 50
 * ms. Compilation must return FV_OK or FV_EINVAL with an error that starts with "column ";
 * the evaluator must never read out of bounds or return anything but 0 or 1. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/trigger.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = strnlen((const char *)data, size);
    char *text = malloc(n + 1);
    if (text == NULL) return 0;
    memcpy(text, data, n);
    text[n] = '\0';
    struct fv_trigger *t = NULL;
    char err[256] = "";
    int rc = fv_trigger_compile(text, fv_trigger_known_signal, NULL, &t, err, sizeof err);
    free(text);
    if (rc == FV_EINVAL && strncmp(err, "column ", 7) != 0) abort();
    if (rc != FV_OK) {
        if (t != NULL) abort();
        return 0;
    }
    struct fv_trigger_state *s;
    if (fv_trigger_state_new(t, &s) != FV_OK) {
        fv_trigger_free(t);
        return 0;
    }
    size_t nsig = fv_trigger_nsignals(t);
    int64_t now = 0;
    for (size_t i = n + 1; i + 3 <= size; i += 3) {
        int slot = nsig ? (int)(data[i] % nsig) : 0;
        if (data[i + 2] & 1)
            fv_trigger_set_str(s, slot, (data[i + 1] & 1) ? "D" : "");
        else if (data[i + 1] == 0)
            fv_trigger_set_none(s, slot);
        else
            fv_trigger_set_num(s, slot, (double)data[i + 1] - 128);
        now += (int64_t)data[i + 2] * 50;
        int level = -1;
        int fired = fv_trigger_step(s, now, &level);
        if ((fired != 0 && fired != 1) || (level != 0 && level != 1) || (fired && !level)) abort();
    }
    fv_trigger_state_free(s);
    fv_trigger_free(t);
    return 0;
}
