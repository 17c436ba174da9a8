/* runtime/err.c: messages and names for the error list in err.h. */
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
