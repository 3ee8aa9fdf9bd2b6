/*
 * err.h - fleetvault's one table of error codes.
 *
 * Every fallible function returns 0 (FV_OK) or one of these negative codes. Functions that
 * can say more write a message into a caller-owned buffer (char *err, size_t errlen); they
 * never log on the caller's behalf. fv_strerror() is safe from any thread.
 */
#ifndef FV_UTIL_ERR_H
#define FV_UTIL_ERR_H

#define FV_ERR_TABLE(X)                                                                            \
    X(FV_OK, 0, "success")                                                                         \
    X(FV_ENOMEM, -1, "out of memory")                                                              \
    X(FV_EIO, -2, "input/output error")                                                            \
    X(FV_EINVAL, -3, "invalid argument")                                                           \
    X(FV_ECORRUPT, -4, "corrupt data")                                                             \
    X(FV_ENOENT, -5, "not found")                                                                  \
    X(FV_ETLS, -6, "TLS or certificate error")                                                     \
    X(FV_ELIMIT, -7, "limit exceeded")                                                             \
    X(FV_EPROTO, -8, "protocol error")                                                             \
    X(FV_EEXIST, -9, "already exists")                                                             \
    X(FV_EAGAIN, -10, "try again")                                                                 \
    X(FV_ESTATE, -11, "wrong state")

enum fv_err {
#define FV_ERR_ENUM(name, val, msg) name = (val),
    FV_ERR_TABLE(FV_ERR_ENUM)
#undef FV_ERR_ENUM
};

/* Returns a static, human-readable message for an error code (never NULL). */
const char *fv_strerror(int code);

/* printf into a caller-owned error buffer; tolerates err == NULL or errlen == 0. */
void fv_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
