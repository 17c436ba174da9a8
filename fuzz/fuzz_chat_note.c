/* fuzz/fuzz_chat_note.c: libFuzzer target for the chat's internal message
 * codec (apps/chat/note.h), which reads what other nodes send over cluster
 * links.
 *
 * The input is a message's data as it arrives (parsed by jansson with the
 * flags the cluster decoders use). Checked: no sanitizer report or leak;
 * a note that decodes has no field longer than its limit and a list of
 * strings only (note.h's contract), encodes again,
 * and decodes to a note that encodes to equal JSON (the codec loses nothing
 * it accepts); every chat type shares the codec, so two types are tried. */
#include "apps/chat/note.h"
#include "apps/chat/proto.h"

#include "fuzz/fuzz_common.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const hm_type *t, const json_t *j)
{
    void *a = NULL, *b = NULL;
    json_t *once, *twice;

    if (t->from_json(j, &a) != HM_OK)
        return;
    if (a) {
        const chat_note *n = a;
        check(!n->user || strlen(n->user) <= CHAT_MAX_NAME);
        check(!n->room || strlen(n->room) <= CHAT_MAX_NAME);
        check(!n->text || strlen(n->text) <= CHAT_MAX_TEXT);
        for (size_t i = 0; n->list && i < json_array_size(n->list); i++)
            check(json_is_string(json_array_get(n->list, i)));
    }
    once = t->to_json(a);
    check(once && t->from_json(once, &b) == HM_OK);
    twice = t->to_json(b);
    check(twice && json_equal(once, twice));
    json_decref(once);
    json_decref(twice);
    t->free(a);
    t->free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size,
                           JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);

    if (!j)
        return 0;
    round_trip(&chat_event_type, j);
    round_trip(&chat_result_type, j);
    json_decref(j);
    return 0;
}
