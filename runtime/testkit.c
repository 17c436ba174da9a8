/* runtime/testkit.c: the receiver-in-isolation test kit (see testkit.h).
 *
 * The kit wraps the test's factory: the receiver under test's name goes to
 * it, every other name gets a pinned mock whose handler records the message
 * (moved, so the captured message keeps its payload) and answers requests
 * through the scripted reply function. Everything runs on the test's thread
 * in manual mode, so the order of captured messages is deterministic. */
#include "runtime/testkit.h"

#include "runtime/alloc.h"
#include "runtime/rt_impl.h"

#include <string.h>

typedef struct captured {
    char *to;
    hm_msg *msg;
} captured;

struct hm_testkit {
    hm_runtime *rt;
    char *name;
    hm_factory_fn factory;
    void *factory_arg;
    hm_addr *sut;
    hm_addr *client;
    hm_testkit_reply_fn reply_fn;
    void *reply_arg;
    captured *items;
    size_t count, cap;
};

typedef struct mock {
    hm_testkit *kit;
    char name[];
} mock;

static hm_err mock_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    mock *mk = state;
    hm_testkit *kit = mk->kit;

    if ((msg->flags & MSG_REQUEST) && kit->reply_fn) {
        hm_msg *r = kit->reply_fn(kit->reply_arg, mk->name, msg);
        if (r && hm_ctx_reply(ctx, msg, r) != HM_OK)
            hm_msg_destroy(r);
    }
    if (kit->count == kit->cap) {
        kit->cap = kit->cap ? 2 * kit->cap : 16;
        kit->items = hm_realloc(kit->items, kit->cap * sizeof *kit->items);
    }
    kit->items[kit->count].to = hm_strdup(mk->name);
    kit->items[kit->count].msg = hm_msg_move(msg);
    kit->count++;
    return HM_OK;
}

static void mock_deactivate(hm_ctx *ctx, void *state,
                            hm_deactivate_reason why)
{
    (void)ctx;
    (void)why;
    hm_free(state);
}

static const hm_hooks mock_hooks = {.deactivate = mock_deactivate};

static hm_err kit_factory(void *arg, const char *name, hm_receiver *out)
{
    hm_testkit *kit = arg;
    mock *mk;

    if (strcmp(name, kit->name) == 0)
        return kit->factory(kit->factory_arg, name, out);
    mk = hm_alloc(sizeof *mk + strlen(name) + 1);
    mk->kit = kit;
    strcpy(mk->name, name);
    *out = (hm_receiver){.handler = mock_handle,
                         .state = mk,
                         .hooks = &mock_hooks,
                         .pinned = true};
    return HM_OK;
}

hm_testkit *hm_testkit_create(const char *name, hm_factory_fn factory,
                              void *factory_arg)
{
    hm_testkit *kit = hm_calloc(1, sizeof *kit);

    kit->name = hm_strdup(name);
    kit->factory = factory;
    kit->factory_arg = factory_arg;
    HM_ASSERT(hm_runtime_create(&(hm_runtime_config){.manual = true,
                                                     .factory = kit_factory,
                                                     .factory_arg = kit},
                                &kit->rt) == HM_OK);
    HM_ASSERT(hm_runtime_intern(kit->rt, name, &kit->sut) == HM_OK);
    HM_ASSERT(hm_runtime_intern(kit->rt, "test/client", &kit->client) ==
              HM_OK);
    /* The client is where replies to hm_testkit_request() land: activate
     * it now and let replies reach its handler as plain messages. */
    hm_receiver r;
    HM_ASSERT(kit_factory(kit, "test/client", &r) == HM_OK);
    HM_ASSERT(hm_runtime_spawn(kit->rt, "test/client", &r, NULL) == HM_OK);
    /* relaxed: the runtime is manual and single-threaded. */
    atomic_fetch_or_explicit(&kit->client->sflags, ENT_RAWREPLY,
                             memory_order_relaxed);
    return kit;
}

void hm_testkit_clear(hm_testkit *kit)
{
    for (size_t i = 0; i < kit->count; i++) {
        hm_free(kit->items[i].to);
        hm_msg_destroy(kit->items[i].msg);
    }
    kit->count = 0;
}

void hm_testkit_destroy(hm_testkit *kit)
{
    if (!kit)
        return;
    /* Captured messages hold references to addresses: free them while the
     * runtime still lives. */
    hm_testkit_clear(kit);
    hm_addr_release(kit->sut);
    hm_addr_release(kit->client);
    hm_runtime_destroy(kit->rt);
    hm_free(kit->items);
    hm_free(kit->name);
    hm_free(kit);
}

hm_runtime *hm_testkit_runtime(hm_testkit *kit)
{
    return kit->rt;
}

hm_err hm_testkit_send(hm_testkit *kit, hm_msg *msg)
{
    hm_err err = hm_rt_send_from(kit->rt, kit->client, kit->sut, msg);

    if (err == HM_OK)
        hm_runtime_run_until_idle(kit->rt);
    return err;
}

hm_err hm_testkit_request(hm_testkit *kit, hm_msg *msg, uint64_t *req_id_out)
{
    /* seq_cst, though ids need only be unique (request.c takes them
     * relaxed): a test helper, kept as it was. */
    uint64_t id = atomic_fetch_add_explicit(&kit->rt->next_req_id, 1,
                                            memory_order_seq_cst) +
                  1;
    hm_err err;

    msg->flags |= MSG_REQUEST;
    msg->req_id = id;
    if ((err = hm_testkit_send(kit, msg)) != HM_OK) {
        msg->flags &= ~(uint32_t)MSG_REQUEST;
        msg->req_id = 0;
        return err;
    }
    if (req_id_out)
        *req_id_out = id;
    return HM_OK;
}

void hm_testkit_advance(hm_testkit *kit, uint64_t ms)
{
    hm_runtime_advance(kit->rt, ms);
}

void hm_testkit_on_request(hm_testkit *kit, hm_testkit_reply_fn fn,
                           void *arg)
{
    kit->reply_fn = fn;
    kit->reply_arg = arg;
}

size_t hm_testkit_captured_count(hm_testkit *kit)
{
    return kit->count;
}

const hm_msg *hm_testkit_captured(hm_testkit *kit, size_t i)
{
    return i < kit->count ? kit->items[i].msg : NULL;
}

const char *hm_testkit_captured_to(hm_testkit *kit, size_t i)
{
    return i < kit->count ? kit->items[i].to : NULL;
}
