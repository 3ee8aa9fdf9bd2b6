/*
 * quota_store.h - the daily quota counters (policy.h, struct fv_quota) kept on disk, so that
 * a restart does not give every principal a fresh day (rule G5).
 *
 * The file is DATA/quota.db (SQLite, mode 0600, WAL, synchronous=NORMAL: a commit survives a
 * crash of the process, a power loss may take the last ones), apart from the catalog: the
 * counters change with every read, and a write to the catalog tells the ingest that owners
 * or consent may have changed (server.c, registry_poll).
 *
 * Table (fv_quota_store_open creates it if missing):
 *   quota_usage(name TEXT PRIMARY KEY,   -- a principal name, or "role:NAME" (a role's budget)
 *               day INTEGER NOT NULL,    -- UTC days since 1970-01-01
 *               subjects INTEGER NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL,
 *               bulk INTEGER NOT NULL)   -- P7: subjects of unapproved bulk exports
 * One row per name: the day it was last counted. Rows of earlier days are worth nothing
 * (a new day starts from zero) and are deleted when loaded. Counters are stored as SQLite
 * integers (signed 64-bit): values above INT64_MAX are stored as INT64_MAX, which is over
 * any limit a policy can set.
 *
 * Threading: one connection per caller (in the server, the API thread's guard).
 */
#ifndef FV_PRIVACY_QUOTA_STORE_H
#define FV_PRIVACY_QUOTA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "privacy/policy.h"

struct sqlite3;
struct sqlite3_stmt;

/* Opens (creating if missing, mode 0600) the counters' database at path into *db. FV_OK, or
 * FV_EIO with err set (*db NULL). Close with sqlite3_close. */
int fv_quota_store_open(const char *path, struct sqlite3 **db, char *err, size_t errlen);
/* Loads the counters of the day of now_ms into q (fv_quota_set) and deletes older rows.
 * FV_OK, FV_EIO, FV_ENOMEM (err says why). */
int fv_quota_store_load(struct sqlite3 *db, struct fv_quota *q, uint64_t now_ms, char *err,
                        size_t errlen);
/* Writes name's counters (one upsert, durable when it returns). FV_OK or FV_EIO. keep: NULL,
 * or where the prepared statement is kept between calls on the same db (the server saves
 * often; start with NULL, sqlite3_finalize it before closing db). */
int fv_quota_store_save(struct sqlite3 *db, struct sqlite3_stmt **keep, const char *name,
                        const struct fv_quota_usage *u);
/* Writes every counter of q in one transaction (all or none; durable when it returns):
 * the batched save of a server that counts in memory (privacy/guard_quota.c). keep as for
 * fv_quota_store_save. FV_OK or FV_EIO. */
int fv_quota_store_save_all(struct sqlite3 *db, struct sqlite3_stmt **keep,
                            const struct fv_quota *q);

#endif
