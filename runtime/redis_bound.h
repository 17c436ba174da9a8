/* runtime/redis_bound.h: a bound on the arrays hiredis reads from a Redis
 * server, shared by every reader of Redis replies (runtime/store_redis.c,
 * apps/mqtt/persist_redis.c).
 *
 * hiredis 0.14 allocates an array's element pointers as soon as it reads
 * the "*N" header, whatever N is: a server answering "*277777777" made a
 * reader ask for 2 GB at once (found by fuzz/fuzz_mqtt_persist_redis.c and
 * again by fuzz/fuzz_runtime_store_redis.c). The bound wraps the reader's
 * array constructor to refuse longer arrays, which hiredis then reports as
 * a failed reply (the context's error is set and the command returns
 * NULL), as for any protocol error. */
#ifndef HM_RUNTIME_REDIS_BOUND_H
#define HM_RUNTIME_REDIS_BOUND_H

struct redisContext;

/* The longest array accepted in a reply (elements, nested ones too). */
#define HM_REDIS_MAX_ELEMENTS (1 << 20)

/* Makes `c` (borrowed; its reader, for the context's life) refuse a reply
 * array longer than HM_REDIS_MAX_ELEMENTS. Thread-safe. */
void hm_redis_bound_replies(struct redisContext *c);

#endif
