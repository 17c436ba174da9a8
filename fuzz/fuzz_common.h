/* fuzz/fuzz_common.h: the few helpers the libFuzzer targets share: check()
 * (abort, so libFuzzer keeps the input, when an oracle fails), the input
 * read as a script of bytes, and a log sink that drops every line (for
 * targets whose inputs are refused with a log line by design).
 * Header-only, static functions: each target is one translation unit and
 * uses what it needs (hence the unused attribute). */
#ifndef HM_FUZZ_COMMON_H
#define HM_FUZZ_COMMON_H

#include "runtime/log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define FUZZ_MAYBE_UNUSED __attribute__((unused))

FUZZ_MAYBE_UNUSED static void check(int ok)
{
    if (!ok)
        abort();
}

/* The input read front to back; 0 once it is used up. */
typedef struct script {
    const uint8_t *p;
    size_t left;
} script;

FUZZ_MAYBE_UNUSED static uint8_t next(script *s)
{
    if (s->left == 0)
        return 0;
    s->left--;
    return *s->p++;
}

FUZZ_MAYBE_UNUSED static void quiet_log(void *arg, hm_log_level level,
                                        const char *id, const char *line)
{
    (void)arg;
    (void)level;
    (void)id;
    (void)line;
}

#endif
