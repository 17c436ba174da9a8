/* tests/apps/mqtt/test_gate.c: packets held until the save that covers
 * them is committed, released in order, dropped with the connection. */
#include "apps/mqtt/gate.h"

#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <string.h>

static void hold(mqtt_gate *g, const char *text)
{
    uint8_t *b = hm_alloc(strlen(text) + 1);

    memcpy(b, text, strlen(text) + 1);
    mqtt_gate_hold(g, b, strlen(text) + 1, true);
}

/* Pops what save `n` releases, as one string joined by spaces. */
static void pop_all(mqtt_gate *g, uint64_t n, char *out)
{
    mqtt_gate_pkt pk;

    out[0] = '\0';
    while (mqtt_gate_pop_committed(g, n, &pk)) {
        if (out[0])
            strcat(out, " ");
        strcat(out, (const char *)pk.bytes);
        hm_free(pk.bytes);
    }
}

Test(mqtt_gate, nothing_leaves_before_the_save_that_covers_it_commits)
{
    mqtt_gate g = {0};
    char got[64];

    hold(&g, "a");
    pop_all(&g, 0, got);
    cr_assert_str_eq(got, "");
    cr_assert_eq(mqtt_gate_next_save(&g), 1);
    pop_all(&g, 1, got);
    cr_assert_str_eq(got, "a");
    mqtt_gate_fini(&g);
}

Test(mqtt_gate, packets_held_after_a_save_wait_for_the_next_one)
{
    mqtt_gate g = {0};
    char got[64];

    hold(&g, "a");
    hold(&g, "b");
    mqtt_gate_next_save(&g); /* 1 covers a, b */
    hold(&g, "c");           /* covered by 2 */
    pop_all(&g, 1, got);
    cr_assert_str_eq(got, "a b");
    mqtt_gate_next_save(&g);
    pop_all(&g, 2, got);
    cr_assert_str_eq(got, "c");
    mqtt_gate_fini(&g);
}

Test(mqtt_gate, a_late_commit_report_of_an_older_save_releases_nothing_new)
{
    mqtt_gate g = {0};
    char got[64];

    mqtt_gate_next_save(&g);
    mqtt_gate_next_save(&g);
    hold(&g, "x"); /* covered by 3 */
    pop_all(&g, 2, got);
    pop_all(&g, 1, got);
    cr_assert_str_eq(got, "");
    cr_assert_eq(g.saves_committed, 2);
    mqtt_gate_fini(&g);
}

Test(mqtt_gate, dropping_frees_everything_and_keeps_the_numbers)
{
    mqtt_gate g = {0};
    char got[64];

    for (int i = 0; i < 40; i++) /* grows the ring */
        hold(&g, "p");
    mqtt_gate_drop(&g);
    cr_assert_eq(g.count, 0);
    cr_assert_eq(mqtt_gate_next_save(&g), 1);
    hold(&g, "q");
    cr_assert_eq(mqtt_gate_next_save(&g), 2);
    pop_all(&g, 2, got);
    cr_assert_str_eq(got, "q");
    mqtt_gate_fini(&g);
}
