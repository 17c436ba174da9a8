%% bench/peers/erlang/hermes_bench.erl: the runtime benchmark scenarios on
%% Erlang/OTP, the runtime a Hermes user would most likely pick instead.
%%
%% Each scenario does what bench/bench_runtime.c does, written the way an
%% Erlang programmer would: plain processes and `!`, gen_server:call for
%% request/reply, erlang:send_after for timers, one process per receiver.
%% Where Erlang has no equivalent of a Hermes feature (activation by name,
%% deactivation), the peer does the least work that gives the same message
%% pattern: a process spawned and sent one message, a process that exits.
%% That favours Erlang, and docs/benchmarks.md says so. Processes that
%% receive from many senders (fan-in sink, parents, timer sink) use an
%% off-heap message queue, as the OTP efficiency guide advises; without it
%% the create scenario is 15x slower (shared/research/runtime-anchors.md).
%%
%% Run: erl +P 4000000 -noshell -pa DIR -run hermes_bench main full|smoke
%% [SCENARIO...]. Prints TSV rows `scenario erlang value unit better`, or
%% in smoke mode tiny sizes, checks and `ok` lines; halts 1 on a failed
%% check.
-module(hermes_bench).
-behaviour(gen_server).

-export([main/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(SENDERS, 4).
-define(PAIRS, 4).

sizes("smoke") ->
    #{pingpong => 1000, ring_actors => 503, ring_hops => 1000,
      fanin => 1000, create => 1000, churn => 1000, churn_names => 100,
      timers => 1000, timer_max => 20, request => 1000, memory => 1000};
sizes(_) ->
    #{pingpong => 1000000, ring_actors => 503, ring_hops => 10000000,
      fanin => 20000000, create => 1000000, churn => 1000000,
      churn_names => 1000, timers => 1000000, timer_max => 1000,
      request => 1000000, memory => 1000000}.

all() -> [pingpong, ring, fanin, create, churn, timers, request, memory].

main([Mode | Names]) ->
    Sz = sizes(Mode),
    Smoke = Mode =:= "smoke",
    Run = case Names of
              [] -> all();
              _ -> [list_to_atom(N) || N <- Names]
          end,
    try
        lists:foreach(fun(S) -> run(S, Sz, Smoke) end, Run),
        halt(0)
    catch
        throw:{check, What, Got, Want} ->
            io:format(standard_error,
                      "hermes_bench (erlang): CHECK FAILED: ~s: got ~p, "
                      "want ~p~n", [What, Got, Want]),
            halt(1);
        Class:Reason:Stack ->
            io:format(standard_error, "hermes_bench (erlang): ~p:~p~n~p~n",
                      [Class, Reason, Stack]),
            halt(1)
    end.

%% ------------------------------------------------------------ helpers

now_ns() -> erlang:monotonic_time(nanosecond).
now_us() -> erlang:monotonic_time(microsecond).
secs(T0, T1) -> (T1 - T0) / 1.0e9.

check(What, Got, Want) when Got =/= Want -> throw({check, What, Got, Want});
check(_, _, _) -> ok.

row(Scenario, Value, Unit, Better) ->
    io:format("~s\terlang\t~s\t~s\t~s~n",
              [Scenario, float_to_list(float(Value), [{scientific, 5}]),
               Unit, Better]).

ok(Fmt, Args) -> io:format("ok " ++ Fmt ++ "~n", Args).

%% Resident set size of the VM in bytes.
rss() ->
    {ok, Bin} = file:read_file("/proc/self/statm"),
    [_, Resident | _] = string:lexemes(binary_to_list(Bin), " \n"),
    list_to_integer(Resident) * 4096.

spawn_offheap(Fun) ->
    spawn_opt(Fun, [link, {message_queue_data, off_heap}]).

%% ------------------------------------------------------------ scenarios

run(pingpong, Sz, Smoke) ->
    N = maps:get(pingpong, Sz),
    Main = self(),
    B = spawn_link(fun pong/0),
    T0 = now_ns(),
    spawn_link(fun() -> ping(B, N, 0, Main) end),
    Got = receive {pp_done, G} -> G end,
    T1 = now_ns(),
    B ! stop,
    case Smoke of
        true -> check("pingpong: pongs", Got, N),
                ok("pingpong erlang: ~b round trips", [N]);
        false -> row("pingpong", 2 * N / secs(T0, T1), "msg/s", "higher")
    end;

run(ring, Sz, Smoke) ->
    NA = maps:get(ring_actors, Sz),
    H = maps:get(ring_hops, Sz),
    Main = self(),
    Pids = [spawn_link(fun() -> ring_init(I, Main) end)
            || I <- lists:seq(0, NA - 1)],
    Nexts = tl(Pids) ++ [hd(Pids)],
    [P ! {next, Nx} || {P, Nx} <- lists:zip(Pids, Nexts)],
    T0 = now_ns(),
    hd(Pids) ! {token, H},
    Last = receive {ring_done, I} -> I end,
    T1 = now_ns(),
    [P ! {stop, Main} || P <- Pids],
    Sum = lists:sum([receive {ring_count, C} -> C end || _ <- Pids]),
    case Smoke of
        true -> check("ring: messages handled", Sum, H + 1),
                check("ring: final holder", Last, H rem NA),
                ok("ring erlang: ~b hops over ~b processes", [H, NA]);
        false -> row("ring", H / secs(T0, T1), "hops/s", "higher")
    end;

run(fanin, Sz, Smoke) ->
    Per = maps:get(fanin, Sz) div ?SENDERS,
    Total = Per * ?SENDERS,
    Main = self(),
    Sink = spawn_offheap(fun() -> fanin_sink(Total, 0, 0, Main) end),
    Go = make_ref(),
    Senders = [spawn_link(fun() -> receive Go -> fanin_send(Sink, Per) end
                          end) || _ <- lists:seq(1, ?SENDERS)],
    T0 = now_ns(),
    [S ! Go || S <- Senders],
    {Got, Sum} = receive {fanin_done, G, Su} -> {G, Su} end,
    T1 = now_ns(),
    case Smoke of
        true -> check("fanin: received", Got, Total),
                check("fanin: sum", Sum, ?SENDERS * Per * (Per + 1) div 2),
                ok("fanin erlang: ~b messages from ~b processes",
                   [Total, ?SENDERS]);
        false -> row("fanin", Total / secs(T0, T1), "msg/s", "higher")
    end;

run(create, Sz, Smoke) ->
    N = maps:get(create, Sz),
    Main = self(),
    spawn_offheap(fun() -> create_parent(N, Main) end),
    receive
        {create_done, Got, T0, T1} ->
            case Smoke of
                true -> check("create: replies", Got, N),
                        ok("create erlang: ~b processes", [N]);
                false -> row("create", secs(T0, T1), "s", "lower")
            end
    end;

run(churn, Sz, Smoke) ->
    N = maps:get(churn, Sz),
    K = min(N, maps:get(churn_names, Sz)),
    Main = self(),
    spawn_offheap(fun() -> churn_driver(N, K, Main) end),
    receive
        {churn_done, Got, T0, T1} ->
            case Smoke of
                true -> check("churn: cycles", Got, N),
                        ok("churn erlang: ~b cycles over ~b names", [N, K]);
                false -> row("churn", N / secs(T0, T1), "cycles/s", "higher")
            end
    end;

run(timers, Sz, Smoke) ->
    N = maps:get(timers, Sz),
    Max = maps:get(timer_max, Sz),
    rand:seed(exsss, {1, 2, 3}),
    Delays = [rand:uniform(Max + 1) - 1 || _ <- lists:seq(1, N)],
    Main = self(),
    Sink = spawn_offheap(fun() -> timer_sink(N, 0, [], Main) end),
    {Cpu0, _} = statistics(runtime),
    T0 = now_ns(),
    arm(Delays, Sink),
    T1 = now_ns(),
    Lates = receive {timers_done, L} -> L end,
    {Cpu1, _} = statistics(runtime),
    Sorted = lists:sort(Lates),
    Early = length([X || X <- Lates, X < -1010]),
    case Smoke of
        true -> check("timers: fired", length(Lates), N),
                check("timers: fired more than 1 ms early", Early, 0),
                ok("timers erlang: ~b timers", [N]);
        false ->
            row("timers-arm", (T1 - T0) / N, "ns/timer", "lower"),
            row("timers-cpu", (Cpu1 - Cpu0) * 1.0e6 / N, "ns/timer", "lower"),
            row("timers-p50", pct(Sorted, N, 50) / 1000, "ms", "lower"),
            row("timers-p99", pct(Sorted, N, 99) / 1000, "ms", "lower")
    end;

run(request, Sz, Smoke) ->
    Per = maps:get(request, Sz) div ?PAIRS,
    Main = self(),
    Pairs = [begin
                 {ok, S} = gen_server:start_link(?MODULE, [], []),
                 C = spawn_link(fun() -> receive go -> client(S, Per, 0, Main)
                                         end end),
                 {C, S}
             end || _ <- lists:seq(1, ?PAIRS)],
    T0 = now_ns(),
    [C ! go || {C, _} <- Pairs],
    Wrong = lists:sum([receive {req_done, W} -> W end || _ <- Pairs]),
    T1 = now_ns(),
    [gen_server:stop(S) || {_, S} <- Pairs],
    case Smoke of
        true -> check("request: wrong replies", Wrong, 0),
                ok("request erlang: ~b round trips over ~b pairs",
                   [Per * ?PAIRS, ?PAIRS]);
        false -> row("request", Per * ?PAIRS / secs(T0, T1), "rt/s",
                     "higher")
    end;

run(memory, Sz, Smoke) ->
    N = maps:get(memory, Sz),
    Main = self(),
    erlang:garbage_collect(),
    Rss0 = rss(),
    M0 = erlang:memory(total),
    Pids = park(N, Main, []),
    [receive parked -> ok end || _ <- Pids],
    erlang:garbage_collect(),
    Rss1 = rss(),
    M1 = erlang:memory(total),
    Alive = length([P || P <- Pids, is_process_alive(P)]),
    [P ! stop || P <- Pids],
    case Smoke of
        true -> check("memory: parked processes", Alive, N),
                ok("memory erlang: ~b parked processes", [N]);
        false -> row("memory", (Rss1 - Rss0) / N, "B/receiver", "lower"),
                 row("memory-heap", (M1 - M0) / N, "B/receiver", "lower")
    end;

run(Other, _, _) ->
    throw({check, "scenario name", Other, all()}).

%% ------------------------------------------------------------ processes

ping(_B, 0, Got, Main) ->
    Main ! {pp_done, Got};
ping(B, K, Got, Main) ->
    B ! {ping, self(), K},
    receive {pong, K} -> ping(B, K - 1, Got + 1, Main) end.

pong() ->
    receive
        {ping, From, K} -> From ! {pong, K}, pong();
        stop -> ok
    end.

ring_init(I, Main) ->
    receive {next, Next} -> ring_loop(I, Next, Main, 0) end.

ring_loop(I, Next, Main, C) ->
    receive
        {token, 0} -> Main ! {ring_done, I}, ring_loop(I, Next, Main, C + 1);
        {token, K} -> Next ! {token, K - 1}, ring_loop(I, Next, Main, C + 1);
        {stop, From} -> From ! {ring_count, C}
    end.

fanin_send(_Sink, 0) -> ok;
fanin_send(Sink, K) -> Sink ! K, fanin_send(Sink, K - 1).

fanin_sink(Total, Total, Sum, Main) ->
    Main ! {fanin_done, Total, Sum};
fanin_sink(Total, C, Sum, Main) ->
    receive K -> fanin_sink(Total, C + 1, Sum + K, Main) end.

create_parent(N, Main) ->
    T0 = now_ns(),
    create_spawn(N, self()),
    Got = create_collect(N, 0),
    Main ! {create_done, Got, T0, now_ns()}.

create_spawn(0, _) -> ok;
create_spawn(K, Parent) ->
    Child = spawn(fun create_child/0),
    Child ! {go, Parent, K},
    create_spawn(K - 1, Parent).

create_child() ->
    receive {go, Parent, K} -> Parent ! {done, K} end.

create_collect(N, N) -> N;
create_collect(N, C) -> receive {done, _} -> create_collect(N, C + 1) end.

%% One cycle: a process is started for name I (activation), handles one
%% message, replies and exits (deactivation); the reply starts the next.
churn_driver(Total, K, Main) ->
    T0 = now_ns(),
    Self = self(),
    [churn_start(I, Self) || I <- lists:seq(1, K)],
    Done = churn_loop(Total, K, 0, Self),
    Main ! {churn_done, Done, T0, now_ns()}.

churn_start(I, Driver) ->
    Worker = spawn(fun churn_worker/0),
    Worker ! {work, Driver, I}.

churn_worker() ->
    receive {work, Driver, I} -> Driver ! {done, I} end.

churn_loop(Total, _Sent, Total, _Self) -> Total;
churn_loop(Total, Sent, Done, Self) ->
    receive
        {done, I} when Sent < Total ->
            churn_start(I, Self),
            churn_loop(Total, Sent + 1, Done + 1, Self);
        {done, _} ->
            churn_loop(Total, Sent, Done + 1, Self)
    end.

arm([], _Sink) -> ok;
arm([D | Ds], Sink) ->
    erlang:send_after(D, Sink, {fire, now_us() + D * 1000}),
    arm(Ds, Sink).

timer_sink(N, N, Acc, Main) -> Main ! {timers_done, Acc};
timer_sink(N, C, Acc, Main) ->
    receive {fire, Due} -> timer_sink(N, C + 1, [now_us() - Due | Acc], Main)
    end.

pct(Sorted, N, P) ->
    lists:nth(min(N, round(P / 100 * (N - 1)) + 1), Sorted).

client(_S, 0, Wrong, Main) -> Main ! {req_done, Wrong};
client(S, K, Wrong, Main) ->
    W = case gen_server:call(S, {req, K}, 60000) of
            R when R =:= K + 1 -> 0;
            _ -> 1
        end,
    client(S, K - 1, Wrong + W, Main).

park(0, _Main, Acc) -> Acc;
park(K, Main, Acc) ->
    P = spawn(fun() -> parked(Main) end),
    P ! hello,
    park(K - 1, Main, [P | Acc]).

parked(Main) ->
    receive hello -> Main ! parked end,
    receive stop -> ok end.

%% ------------------------------------------------------------ gen_server

init([]) -> {ok, 0}.
handle_call({req, K}, _From, S) -> {reply, K + 1, S}.
handle_cast(_Msg, S) -> {noreply, S}.
