/* apps/mqtt/persist_impl.h: what the two backends of persist.h share
 * (persist.c: SQLite and the dispatch; persist_redis.c: Redis). Nothing
 * outside apps/mqtt/ includes it but the Redis backend's fuzz target and
 * unit test, for mqtt_persist_open_redis_fd(). */
#ifndef HM_APPS_MQTT_PERSIST_IMPL_H
#define HM_APPS_MQTT_PERSIST_IMPL_H

#include "apps/mqtt/persist.h"

/* One backend; `impl` is its own object. Errors are logged by the backend
 * (HM_ESTORE); load errors are written into `err`. */
typedef struct mqtt_persist_ops {
    hm_err (*begin)(void *impl);
    hm_err (*put_session)(void *impl, const char *client_id,
                          const uint8_t *record, size_t len);
    hm_err (*put_retained)(void *impl, const char *topic, size_t topic_len,
                           const uint8_t *payload, size_t payload_len,
                           uint8_t qos);
    hm_err (*inbound)(void *impl, const char *client_id, uint16_t packet_id,
                      bool add);
    hm_err (*commit)(void *impl);
    void (*rollback)(void *impl);
    hm_err (*load)(void *impl, const mqtt_persist_visitor *v,
                   mqtt_file_error *err);
    /* NULL: the store is not shared, no node's sessions are in it. */
    hm_err (*load_node)(void *impl, const char *node,
                        const mqtt_persist_visitor *v, mqtt_file_error *err);
    void (*close)(void *impl);
} mqtt_persist_ops;

/* Wraps a backend. Borrows `ops` (static), takes `impl` and `where`
 * (hm_strdup'd). Returns owned. */
mqtt_persist *mqtt_persist_wrap(const mqtt_persist_ops *ops, void *impl,
                                char *where);

/* Redis over an already connected stream socket `fd` (taken: closed by
 * mqtt_persist_close()), for fuzz/fuzz_mqtt_persist_redis.c, which plays
 * the server. `prefix` and `node` as mqtt_persist_open_redis(); a lost
 * connection is not made again. Returns owned on HM_OK; HM_ESTORE if
 * hiredis cannot take the socket. */
hm_err mqtt_persist_open_redis_fd(int fd, const char *prefix,
                                  const char *node, mqtt_persist **out);

#endif
