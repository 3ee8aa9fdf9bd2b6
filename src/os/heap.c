/* heap.c - the allocator's thresholds for the server (heap.h). */
#include <malloc.h>

#include "os/heap.h"

#define HEAP_MMAP_THRESHOLD (32 * 1024 * 1024)  /* glibc's maximum on 64-bit */
#define HEAP_TRIM_THRESHOLD (256 * 1024 * 1024) /* freed heap top kept mapped */

int fv_heap_tune(void)
{
    /* mallopt returns 1 on success, 0 on error. Setting either value also stops glibc's
     * dynamic threshold adjustment, which is what we want: a steady policy. */
    int ok = mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD);
    ok &= mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD);
    return ok ? 0 : -1;
}
