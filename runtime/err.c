/* runtime/err.c: messages and names for the error list in err.h.
 *
 * Key decision (STYLE 4): both tables are generated from HM_ERR_LIST, the
 * single list in err.h, so a code, its name and its message can never drift
 * apart; a value outside the list gets a fixed "unknown" answer rather than
 * an out-of-bounds read. */
#include "runtime/err.h"

static const char *const messages[] = {
#define HM_ERR_TEXT(code, text) text,
    HM_ERR_LIST(HM_ERR_TEXT)
#undef HM_ERR_TEXT
};

static const char *const names[] = {
#define HM_ERR_NAME(code, text) #code,
    HM_ERR_LIST(HM_ERR_NAME)
#undef HM_ERR_NAME
};

const char *hm_err_str(hm_err err)
{
    if ((unsigned)err >= HM_ERR_COUNT)
        return "unknown error";
    return messages[err];
}

const char *hm_err_name(hm_err err)
{
    if ((unsigned)err >= HM_ERR_COUNT)
        return "HM_EUNKNOWN";
    return names[err];
}
