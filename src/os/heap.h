/*
 * heap.h - how the server's process asks the C library's allocator to keep memory.
 *
 * The store's head grows per device by doubling arrays and is dropped whole after each flush
 * (store/store.h), tens of megabytes at a time. With glibc's defaults an array past the
 * dynamic mmap threshold is mapped fresh and unmapped when freed, and a freed heap top above
 * 128 KiB is given back to the kernel: every head then touches brand-new pages, and each first
 * touch is a page fault (costly in a virtual machine). fv_heap_tune keeps allocations up to
 * 32 MiB in the heap and up to 256 MiB of freed heap top mapped, so the next head reuses the
 * pages of the last one. Measured on a 300-vehicle x 1,000 s virtual-time feed (6 M datums),
 * four alternating pairs of runs: 8% less server CPU with it, lower in every pair.
 *
 * What it costs: freed memory stays in the process between flushes, up to 256 MiB; a head at
 * the default flush size (2M datums of 32 bytes) is about 64 MiB, and a flush holds two. The
 * memory per connected vehicle (bench/ingest/run.sh, 10,000 connections) measured the same
 * with and without it: 34.3 KB.
 *
 * Threads: call once, from the main thread, before other threads start.
 */
#ifndef FV_OS_HEAP_H
#define FV_OS_HEAP_H

/* Sets the allocator's thresholds above. Returns 0, or -1 when the C library refused (it then
 * runs with its defaults: only slower). */
int fv_heap_tune(void);

#endif
