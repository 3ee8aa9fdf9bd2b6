/* reclog.c - the local WAL behind the record log interface (reclog.h). */
#include "wal/reclog.h"

static int64_t wal_append(void *impl, const struct fv_wal_record *rec)
{
    return fv_wal_append(impl, rec);
}

static uint64_t wal_durable(void *impl)
{
    return fv_wal_durable_seq(impl);
}

static uint64_t wal_appended(void *impl)
{
    return fv_wal_appended_seq(impl);
}

static int wal_failed(void *impl)
{
    return fv_wal_failed(impl);
}

struct fv_reclog fv_wal_reclog(struct fv_wal *w)
{
    return (struct fv_reclog){w, wal_append, wal_durable, wal_appended, wal_failed};
}
