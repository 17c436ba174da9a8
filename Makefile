# Hermes build: a plain Makefile, out of tree into $(BUILD) (default build/).
#
# Every folder of a layer (runtime, net, cluster, apps/mqtt, apps/chat)
# builds to its own static library from every .c in it except main.c, so a
# header included from the wrong layer shows up as a link error. Tests are
# one binary per file (tests/<layer>/test_<module>.c); the concurrency stress
# programs (tests/stress/stress_*.c) are plain programs with our own harness,
# because Debian's Criterion cannot start under ThreadSanitizer.
#
# The sanitizer targets re-run this Makefile into build/asan and build/tsan
# with the sanitizer flags, so the three builds never mix objects.

BUILD   ?= build
CC      ?= cc
SAN     ?=
OPT     ?= -O2
CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -g -pthread -I. \
           -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wno-unused-parameter -MMD -MP \
           $(SAN) $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(SAN)
LDLIBS  := -ljansson -lcrypto -lsqlite3 -lhiredis -lm

# The Debian packages the build itself needs; tests that drive real peers
# install theirs through the same script.
BUILD_PKGS := gcc make libc6-dev libjansson-dev libcriterion-dev libssl-dev libsqlite3-dev libhiredis-dev pkg-config

# Layers from top to bottom: the link order of the static libraries.
LAYERS  := apps/chat apps/mqtt cluster net runtime
libname  = $(BUILD)/lib/libhm_$(subst /,_,$(1)).a
libsrcs  = $(filter-out %/main.c,$(wildcard $(1)/*.c))
objs     = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
HAVE_LAYERS := $(foreach l,$(LAYERS),$(if $(call libsrcs,$(l)),$(l)))
LIBS    := $(foreach l,$(HAVE_LAYERS),$(call libname,$(l)))

TEST_SRCS   := $(wildcard tests/*/test_*.c) $(wildcard tests/apps/*/test_*.c)
TESTS       := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
STRESS_SRCS := $(wildcard tests/stress/stress_*.c)
STRESS      := $(patsubst tests/%.c,$(BUILD)/tests/%,$(STRESS_SRCS))
BENCH_SRCS  := $(wildcard bench/bench_*.c)
BENCHES     := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
PROGRAMS    := $(BUILD)/hermes-demo \
               $(if $(wildcard apps/mqtt/main.c),$(BUILD)/hermes-mqtt) \
               $(if $(wildcard apps/mqtt/tools/passwd.c),$(BUILD)/hermes-mqtt-passwd) \
               $(if $(wildcard apps/chat/main.c),$(BUILD)/hermes-chat)

.PHONY: all deps run test unit stress smoke integration bench asan tsan \
        fuzz format clean static demo-chat
.DEFAULT_GOAL := all

all: $(LIBS) $(PROGRAMS) $(TESTS) $(STRESS) $(BENCHES)

# First step of every build: install what is missing (see mk/deps.sh).
deps:
	@sh mk/deps.sh $(BUILD_PKGS)

$(LIBS) $(PROGRAMS) $(TESTS) $(STRESS) $(BENCHES): | deps

define layer_rules
$(call libname,$(1)): $(call objs,$(call libsrcs,$(1)))
	@mkdir -p $$(@D)
	$$(AR) rcs $$@ $$^
endef
$(foreach l,$(HAVE_LAYERS),$(eval $(call layer_rules,$(l))))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/hermes-demo: $(BUILD)/obj/examples/demo.o $(LIBS)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/hermes-mqtt: $(BUILD)/obj/apps/mqtt/main.o $(LIBS)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/hermes-mqtt-passwd: $(BUILD)/obj/apps/mqtt/tools/passwd.o $(LIBS)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/hermes-chat: $(BUILD)/obj/apps/chat/main.o $(LIBS)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/stress/%: $(BUILD)/obj/tests/stress/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcriterion -o $@
# A benchmark program bench/bench_<name>.c may keep more files in
# bench/<name>/; they are linked into it.
.SECONDEXPANSION:
$(BUILD)/bench/bench_%: $(BUILD)/obj/bench/bench_%.o \
    $$(addprefix $(BUILD)/obj/,$$(subst .c,.o,$$(wildcard bench/$$*/*.c))) \
    $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# `make static`: the app binaries as single static executables (glibc's
# name lookup still wants the host's NSS libraries, so give them numeric
# addresses) that run where the -dev packages are not installed.
STATIC_LIBS := $(LDLIBS) -ldl
# Links $@ statically; the linker's warnings about NSS are kept in $@.log.
define static_link
@mkdir -p $(@D)
$(CC) -static $(LDFLAGS) $^ $(STATIC_LIBS) -o $@ 2>$@.log || { cat $@.log; rm -f $@; exit 1; }
endef
STATIC_APPS := $(patsubst $(BUILD)/%,$(BUILD)/static/%,$(filter-out $(BUILD)/hermes-demo,$(PROGRAMS)))
static: $(STATIC_APPS)
$(BUILD)/static/hermes-mqtt: $(BUILD)/obj/apps/mqtt/main.o $(LIBS)
	$(static_link)
$(BUILD)/static/hermes-mqtt-passwd: $(BUILD)/obj/apps/mqtt/tools/passwd.o $(LIBS)
	$(static_link)
$(BUILD)/static/hermes-chat: $(BUILD)/obj/apps/chat/main.o $(LIBS)
	$(static_link)
$(STATIC_APPS): | deps

# `make run`: the main job. Until the MQTT broker exists, the runtime demo.
run: all
	@if [ -x $(BUILD)/hermes-mqtt ]; then \
	    exec $(BUILD)/hermes-mqtt -p 1883; \
	else exec $(BUILD)/hermes-demo; fi

test: all
	@sh mk/run-tests.sh $(BUILD) unit stress smoke integration

# `make demo-chat`: three chat servers clustered on loopback (docs/chat.md).
demo-chat: $(BUILD)/hermes-chat
	@sh mk/demo-chat.sh $(BUILD)

unit: all
	@sh mk/run-tests.sh $(BUILD) unit
stress: all
	@sh mk/run-tests.sh $(BUILD) stress

# The tests under AddressSanitizer+UBSan: the Criterion tests and the
# stress programs.
asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    $(TESTS:$(BUILD)/%=build/asan/%) $(STRESS:$(BUILD)/%=build/asan/%)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    sh mk/run-tests.sh build/asan unit stress

# ThreadSanitizer: the stress programs only (Criterion aborts at start
# under TSan, upstream Snaipe/Criterion#274).
tsan:
	@$(MAKE) --no-print-directory BUILD=build/tsan OPT=-O1 \
	    SAN="-fsanitize=thread" $(STRESS:$(BUILD)/%=build/tsan/%)
	@TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	    sh mk/run-tests.sh build/tsan stress

bench: all
	@sh bench/run.sh $(BUILD) all
bench-%: all
	@sh bench/run.sh $(BUILD) $*

fuzz:
	@sh mk/fuzz.sh $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
