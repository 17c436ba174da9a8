/* tests/stress/stress_cluster.c: two cluster nodes in one process, each
 * with its own runtime, net and threads, linked over loopback, under
 * concurrent sends and requests in both directions. A plain program so that
 * `make tsan` runs the node driver, its receivers, the routing lock and the
 * proxies under ThreadSanitizer (Criterion cannot start there).
 *
 * Scenarios: requests and sends cross both ways at once and every one is
 * answered or counted exactly; a node stopping gracefully is seen to leave. */
#include "harness.h"
#include "tests/cluster/node_child.h"

#include <pthread.h>

#define SECRET "stress cluster secret, long enough"

typedef struct node {
    hm_runtime *rt;
    hm_net *net;
    hm_node *node;
    echo_env env;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ups, lefts; /* guarded by: lock */
} node;

static void on_event(void *arg, const char *name, uint64_t inc,
                     hm_member_event ev)
{
    node *n = arg;

    (void)name;
    (void)inc;
    pthread_mutex_lock(&n->lock);
    n->ups += ev == HM_MEMBER_EV_UP;
    n->lefts += ev == HM_MEMBER_EV_LEFT;
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

static void seen_nothing(void *arg, const char *addr, const char *text)
{
    (void)arg;
    (void)addr;
    (void)text;
}

static void start(node *n, const char *name, const char *seed)
{
    const char *seeds[1] = {seed};
    hm_node_config cfg = {.name = name, .listen = "127.0.0.1:0",
                          .seeds = seeds, .seed_count = seed ? 1 : 0,
                          .secret = SECRET, .secret_len = sizeof SECRET - 1,
                          .factory = echo_factory, .factory_arg = &n->env,
                          .on_event = on_event, .event_arg = n};

    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    n->env = (echo_env){.node = name, .seen = seen_nothing};
    CHECK(hm_node_create(&cfg, &n->node) == HM_OK);
    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                 .factory = hm_node_factory,
                                                 .factory_arg = n->node},
                            &n->rt) == HM_OK);
    CHECK(hm_runtime_register_type(n->rt, &TEXT) == HM_OK);
    CHECK(hm_net_create(&(hm_net_config){.rt = n->rt}, &n->net) == HM_OK);
    CHECK(hm_node_start(n->node, n->rt, n->net) == HM_OK);
}

static void stop(node *n)
{
    hm_node_stop(n->node, 1000);
    hm_net_stop(n->net);
    hm_runtime_destroy(n->rt);
    hm_net_destroy(n->net);
    hm_node_destroy(n->node);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
}

static void wait_count(node *n, int *field, int want)
{
    pthread_mutex_lock(&n->lock);
    while (*field < want)
        pthread_cond_wait(&n->cond, &n->lock);
    pthread_mutex_unlock(&n->lock);
}

static void wait_lookup(node *n, const char *name)
{
    char where[HM_NODE_NAME_MAX + 1];

    while (hm_node_lookup(n->node, name, where) != HM_OK)
        usleep(1000);
}

/* One client thread: `count` sends to a sink and requests to an echo on the
 * other node, then asks the sink how many it counted. */
typedef struct client {
    node *from;
    const char *sink, *echo;
    long count;
    long replies;
} client;

static void *client_run(void *arg)
{
    client *c = arg;
    hm_addr *sink, *echo;
    hm_msg *reply;

    CHECK(hm_runtime_intern(c->from->rt, c->sink, &sink) == HM_OK);
    CHECK(hm_runtime_intern(c->from->rt, c->echo, &echo) == HM_OK);
    for (long i = 0; i < c->count; i++) {
        CHECK(hm_runtime_send(c->from->rt, sink, text_msg("x")) == HM_OK);
        if (i % 10 == 0) {
            CHECK(hm_runtime_call(c->from->rt, echo, text_msg("q"), 30000,
                                  &reply) == HM_OK);
            CHECK(hm_msg_type(reply) == &TEXT);
            c->replies++;
            hm_msg_destroy(reply);
        }
    }
    CHECK(hm_runtime_call(c->from->rt, sink, text_msg("count"), 30000,
                          &reply) == HM_OK);
    CHECK(hm_msg_type(reply) == &TEXT);
    CHECK(strtol(hm_msg_payload(reply), NULL, 10) == c->count);
    hm_msg_destroy(reply);
    hm_addr_release(sink);
    hm_addr_release(echo);
    return NULL;
}

static void sends_and_requests_cross_both_ways(void)
{
    node a = {0}, b = {0};
    long count = stress_scaled(2000);
    client ca = {.from = &a, .sink = "test/sink/b", .echo = "test/echo/b",
                 .count = count};
    client cb = {.from = &b, .sink = "test/sink/a", .echo = "test/echo/a",
                 .count = count};
    pthread_t ta, tb;

    start(&a, "A", NULL);
    start(&b, "B", hm_node_addr(a.node));
    wait_count(&a, &a.ups, 1);
    wait_count(&b, &b.ups, 1);
    CHECK(hm_node_register(a.node, "test/sink/a") == HM_OK);
    CHECK(hm_node_register(a.node, "test/echo/a") == HM_OK);
    CHECK(hm_node_register(b.node, "test/sink/b") == HM_OK);
    CHECK(hm_node_register(b.node, "test/echo/b") == HM_OK);
    wait_lookup(&a, "test/sink/b");
    wait_lookup(&a, "test/echo/b");
    wait_lookup(&b, "test/sink/a");
    wait_lookup(&b, "test/echo/a");
    pthread_create(&ta, NULL, client_run, &ca);
    pthread_create(&tb, NULL, client_run, &cb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(ca.replies == (count + 9) / 10 && cb.replies == (count + 9) / 10);
    stop(&b);
    wait_count(&a, &a.lefts, 1);
    stop(&a);
}

int main(void)
{
    hm_log_set_level(HM_LOG_LEVEL_ERROR);
    RUN_SCENARIO(sends_and_requests_cross_both_ways);
    return 0;
}
