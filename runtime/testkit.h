/* runtime/testkit.h: test one receiver in isolation.
 *
 * A test kit is a manual-mode runtime (no threads, a manual clock) in which
 * one address, the receiver under test, is activated by the factory the test
 * provides, and every other address is a mock that records each message it
 * receives and, if scripted, answers requests. A test sends scripted
 * messages, advances the clock, and asserts on what the receiver sent:
 *
 *     hm_testkit *kit = hm_testkit_create("room/lobby", room_factory, NULL);
 *     hm_testkit_send(kit, hm_msg_create(&JOIN, strdup("alice"), 0));
 *     cr_assert_eq(hm_testkit_captured_count(kit), 1);
 *     cr_assert_str_eq(hm_testkit_captured_to(kit, 0), "chat/user/alice");
 */
#ifndef HM_RUNTIME_TESTKIT_H
#define HM_RUNTIME_TESTKIT_H

#include "runtime/runtime.h"

typedef struct hm_testkit hm_testkit;

/* Answers a request that reached a mock: returns an owned reply, or NULL
 * for no reply. `request` is borrowed. */
typedef hm_msg *(*hm_testkit_reply_fn)(void *arg, const char *mock_name,
                                       const hm_msg *request);

/* Creates a kit whose receiver under test is `name` (borrowed), made by
 * `factory`. Returns owned (never NULL). */
hm_testkit *hm_testkit_create(const char *name, hm_factory_fn factory,
                              void *factory_arg);
/* Closes the runtime (hooks run) and frees every captured message. */
void hm_testkit_destroy(hm_testkit *kit);
/* Returns borrowed: the kit's runtime (manual mode). */
hm_runtime *hm_testkit_runtime(hm_testkit *kit);

/* Sends `msg` (taken on HM_OK) to the receiver under test from the mock
 * "test/client", and runs until idle. */
hm_err hm_testkit_send(hm_testkit *kit, hm_msg *msg);
/* Sends `msg` as a request from "test/client"; the reply is captured like
 * any message to that mock (hm_msg_req_id() equals *req_id_out). */
hm_err hm_testkit_request(hm_testkit *kit, hm_msg *msg, uint64_t *req_id_out);
/* Advances the manual clock, firing timers, and runs until idle. */
void hm_testkit_advance(hm_testkit *kit, uint64_t ms);

/* Requests reaching mocks are answered by `fn` (NULL: never answered). */
void hm_testkit_on_request(hm_testkit *kit, hm_testkit_reply_fn fn,
                           void *arg);

/* What the mocks received, in order. Returned pointers are borrowed until
 * hm_testkit_clear() or destroy. */
size_t hm_testkit_captured_count(hm_testkit *kit);
const hm_msg *hm_testkit_captured(hm_testkit *kit, size_t i);
const char *hm_testkit_captured_to(hm_testkit *kit, size_t i);
void hm_testkit_clear(hm_testkit *kit);

#endif
