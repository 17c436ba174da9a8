/* runtime/redis_bound.c: the bound on reply arrays (redis_bound.h). The
 * reader's default object functions are copied once, with the array
 * constructor replaced by one that refuses a "*N" header above
 * HM_REDIS_MAX_ELEMENTS before hiredis allocates N pointers; every
 * bounded context's reader points at that one copy (hiredis never frees
 * a reader's `fn`). */
#include "runtime/redis_bound.h"

#include <hiredis/hiredis.h>
#include <pthread.h>

static redisReplyObjectFunctions bounded_fn; /* set once by bounded_init */
static void *(*create_array)(const redisReadTask *, int);
static pthread_once_t bounded_once = PTHREAD_ONCE_INIT;

static void *bounded_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > HM_REDIS_MAX_ELEMENTS)
        return NULL; /* hiredis: "out of memory", a failed reply */
    return create_array(task, elements);
}

static void bounded_init(void)
{
    redisReader *r = redisReaderCreate();

    bounded_fn = *r->fn;
    create_array = bounded_fn.createArray;
    bounded_fn.createArray = bounded_array;
    redisReaderFree(r);
}

void hm_redis_bound_replies(redisContext *c)
{
    pthread_once(&bounded_once, bounded_init);
    c->reader->fn = &bounded_fn;
}
