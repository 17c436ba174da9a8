/* runtime/err.h: the one error list of the whole project.
 *
 * Every function that can fail returns an hm_err and delivers its result
 * through a trailing out-parameter that it writes only on HM_OK. The list is
 * an X-macro so that each code and its message stay together; add new codes
 * at the end of a group, never renumber (codes cross the wire in HP error
 * messages by name, not by number). */
#ifndef HM_RUNTIME_ERR_H
#define HM_RUNTIME_ERR_H

#define HM_ERR_LIST(X)                                                        \
    X(HM_OK, "success")                                                       \
    X(HM_EAGAIN, "try again")                                                 \
    X(HM_ECLOSED, "object is closed")                                         \
    X(HM_EPROTO, "protocol violation")                                        \
    X(HM_ESYS, "system call failed (see log)")                                \
    X(HM_EINVAL, "invalid argument")                                          \
    X(HM_ENOTFOUND, "no such receiver")                                       \
    X(HM_EFULL, "mailbox or queue is full")                                   \
    X(HM_ETIMEDOUT, "timed out")                                              \
    X(HM_EHANDLER, "the receiver's handler failed")                           \
    X(HM_EEXIST, "already exists")                                            \
    X(HM_ETOOBIG, "too large")                                                \
    X(HM_ECODEC, "no JSON codec for this message type")                      \
    X(HM_EUNREACHABLE, "the node holding the receiver is unreachable")        \
    X(HM_ECONNREFUSED, "connection refused")                                  \
    X(HM_ECONNRESET, "connection reset by peer")                              \
    X(HM_EDENIED, "not authorised")                                           \
    X(HM_ESTORE, "the durable store failed (see log)")

typedef enum {
#define HM_ERR_ENUM(code, text) code,
    HM_ERR_LIST(HM_ERR_ENUM)
#undef HM_ERR_ENUM
        HM_ERR_COUNT
} hm_err;

/* A human sentence for `err`. Returns borrowed static storage. */
const char *hm_err_str(hm_err err);

/* The code's stable name ("HM_ENOTFOUND"). Returns borrowed static storage. */
const char *hm_err_name(hm_err err);

#endif
