// bench/peers/go/main.go: the runtime benchmark scenarios on Go goroutines
// and channels, what a Hermes user might pick instead.
//
// Each scenario does what bench/bench_runtime.c does, written the way a Go
// programmer would: a goroutine per receiver, a channel as its mailbox, a
// reply channel for request/reply, time.AfterFunc for timers. Where Go has
// no equivalent of a Hermes feature (activation by name, deactivation), the
// peer does the least work that gives the same message pattern: a goroutine
// started and sent one message, a goroutine that returns. That favours Go,
// and docs/benchmarks.md says so. Channels that many goroutines send to
// (fan-in sink, parents, timer sink) are buffered, Go's nearest thing to an
// unbounded mailbox; hand-offs between two goroutines are unbuffered.
//
// Run: hermes-bench-go full|smoke [SCENARIO...]. Prints TSV rows
// `scenario go value unit better`, or in smoke mode tiny sizes, checks and
// `ok` lines; exits 1 on a failed check.
package main

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const senders = 4
const pairs = 4

type sizes struct {
	pingpong, ringActors, ringHops, fanin, create int
	churn, churnNames, timers, timerMax           int
	request, memory                               int
}

var full = sizes{1000000, 503, 10000000, 20000000, 1000000,
	1000000, 1000, 1000000, 1000, 1000000, 1000000}
var smoke = sizes{1000, 503, 1000, 1000, 1000,
	1000, 100, 1000, 20, 1000, 1000}

type bench struct {
	sz    sizes
	smoke bool
}

func row(scenario string, value float64, unit, better string) {
	fmt.Printf("%s\tgo\t%.6g\t%s\t%s\n", scenario, value, unit, better)
}

func ok(format string, args ...interface{}) {
	fmt.Printf("ok "+format+"\n", args...)
}

func check(what string, got, want int) {
	if got != want {
		fmt.Fprintf(os.Stderr, "hermes-bench-go: CHECK FAILED: %s: got %d, want %d\n",
			what, got, want)
		os.Exit(1)
	}
}

func secs(t0 time.Time) float64 { return time.Since(t0).Seconds() }

func cpuNs() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// rss returns the resident set size in bytes.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// ------------------------------------------------------------ scenarios

func (b *bench) pingpong() {
	n := b.sz.pingpong
	ping, pong := make(chan int), make(chan int)
	done := make(chan int)
	go func() {
		for k := range ping {
			pong <- k
		}
	}()
	t0 := time.Now()
	go func() {
		got := 0
		for k := n; k > 0; k-- {
			ping <- k
			if <-pong == k {
				got++
			}
		}
		close(ping)
		done <- got
	}()
	got := <-done
	if b.smoke {
		check("pingpong: pongs", got, n)
		ok("pingpong go: %d round trips", n)
		return
	}
	row("pingpong", 2*float64(n)/secs(t0), "msg/s", "higher")
}

func (b *bench) ring() {
	na, hops := b.sz.ringActors, b.sz.ringHops
	chans := make([]chan int, na)
	for i := range chans {
		chans[i] = make(chan int)
	}
	last := make(chan int)
	counts := make([]int, na)
	var wg sync.WaitGroup
	for i := 0; i < na; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			in, next := chans[i], chans[(i+1)%na]
			for k := range in {
				counts[i]++
				if k == 0 {
					last <- i
				} else {
					next <- k - 1
				}
			}
		}(i)
	}
	t0 := time.Now()
	chans[0] <- hops
	holder := <-last
	el := secs(t0)
	for _, c := range chans {
		close(c)
	}
	wg.Wait()
	if b.smoke {
		sum := 0
		for _, c := range counts {
			sum += c
		}
		check("ring: messages handled", sum, hops+1)
		check("ring: final holder", holder, hops%na)
		ok("ring go: %d hops over %d goroutines", hops, na)
		return
	}
	row("ring", float64(hops)/el, "hops/s", "higher")
}

func (b *bench) fanin() {
	per := b.sz.fanin / senders
	total := per * senders
	sink := make(chan int, 1024)
	done := make(chan [2]int)
	go func() {
		got, sum := 0, 0
		for got < total {
			sum += <-sink
			got++
		}
		done <- [2]int{got, sum}
	}()
	start := make(chan struct{})
	for s := 0; s < senders; s++ {
		go func() {
			<-start
			for k := 1; k <= per; k++ {
				sink <- k
			}
		}()
	}
	t0 := time.Now()
	close(start)
	r := <-done
	if b.smoke {
		check("fanin: received", r[0], total)
		check("fanin: sum", r[1], senders*per*(per+1)/2)
		ok("fanin go: %d messages from %d goroutines", total, senders)
		return
	}
	row("fanin", float64(total)/secs(t0), "msg/s", "higher")
}

func (b *bench) create() {
	n := b.sz.create
	parent := make(chan int, n)
	t0 := time.Now()
	for k := 0; k < n; k++ {
		mailbox := make(chan int, 1)
		go func() {
			parent <- <-mailbox
		}()
		mailbox <- k
	}
	got := 0
	for got < n {
		<-parent
		got++
	}
	el := secs(t0)
	if b.smoke {
		check("create: replies", got, n)
		ok("create go: %d goroutines", n)
		return
	}
	row("create", el, "s", "lower")
}

// One cycle: a goroutine is started for name i (activation), handles one
// message, replies and returns (deactivation); the reply starts the next.
func (b *bench) churn() {
	n, k := b.sz.churn, b.sz.churnNames
	if k > n {
		k = n
	}
	driver := make(chan int, k)
	start := func(i int) {
		mailbox := make(chan int, 1)
		go func() {
			driver <- <-mailbox
		}()
		mailbox <- i
	}
	t0 := time.Now()
	for i := 0; i < k; i++ {
		start(i)
	}
	sent, done := k, 0
	for done < n {
		i := <-driver
		done++
		if sent < n {
			sent++
			start(i)
		}
	}
	el := secs(t0)
	if b.smoke {
		check("churn: cycles", done, n)
		ok("churn go: %d cycles over %d names", n, k)
		return
	}
	row("churn", float64(n)/el, "cycles/s", "higher")
}

func (b *bench) timers() {
	n, max := b.sz.timers, b.sz.timerMax
	rng := rand.New(rand.NewSource(1))
	delays := make([]int, n)
	for i := range delays {
		delays[i] = rng.Intn(max + 1)
	}
	origin := time.Now()
	sink := make(chan int64, 65536)
	done := make(chan []int64)
	go func() {
		late := make([]int64, 0, n)
		for len(late) < n {
			due := <-sink
			late = append(late, time.Since(origin).Microseconds()-due)
		}
		done <- late
	}()
	cpu0 := cpuNs()
	t0 := time.Now()
	for _, d := range delays {
		due := time.Since(origin).Microseconds() + int64(d)*1000
		time.AfterFunc(time.Duration(d)*time.Millisecond, func() {
			sink <- due
		})
	}
	arm := time.Since(t0)
	late := <-done
	cpu := cpuNs() - cpu0
	early := 0
	for _, l := range late {
		if l < -1010 {
			early++
		}
	}
	if b.smoke {
		check("timers: fired", len(late), n)
		check("timers: fired more than 1 ms early", early, 0)
		ok("timers go: %d timers", n)
		return
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	pct := func(p float64) float64 {
		return float64(late[int(p/100*float64(n-1)+0.5)]) / 1000
	}
	row("timers-arm", float64(arm.Nanoseconds())/float64(n), "ns/timer", "lower")
	row("timers-cpu", float64(cpu)/float64(n), "ns/timer", "lower")
	row("timers-p50", pct(50), "ms", "lower")
	row("timers-p99", pct(99), "ms", "lower")
}

type request struct {
	k     int
	reply chan int
}

func (b *bench) request() {
	per := b.sz.request / pairs
	done := make(chan int)
	start := make(chan struct{})
	for p := 0; p < pairs; p++ {
		server := make(chan request)
		go func() {
			for r := range server {
				r.reply <- r.k + 1
			}
		}()
		go func() {
			reply := make(chan int, 1)
			wrong := 0
			<-start
			for k := per; k > 0; k-- {
				server <- request{k, reply}
				if <-reply != k+1 {
					wrong++
				}
			}
			close(server)
			done <- wrong
		}()
	}
	t0 := time.Now()
	close(start)
	wrong := 0
	for p := 0; p < pairs; p++ {
		wrong += <-done
	}
	el := secs(t0)
	if b.smoke {
		check("request: wrong replies", wrong, 0)
		ok("request go: %d round trips over %d pairs", per*pairs, pairs)
		return
	}
	row("request", float64(per*pairs)/el, "rt/s", "higher")
}

// A parked receiver is a goroutine blocked on its own mailbox channel,
// after handling one message; the slice of mailboxes is the directory.
func (b *bench) memory() {
	n := b.sz.memory
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	rss0 := rss()
	mailboxes := make([]chan int, n)
	var handled sync.WaitGroup
	handled.Add(n)
	for i := range mailboxes {
		mb := make(chan int)
		mailboxes[i] = mb
		go func() {
			<-mb
			handled.Done()
			<-mb
		}()
		mb <- i
	}
	handled.Wait()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	rss1 := rss()
	alive := runtime.NumGoroutine()
	for _, mb := range mailboxes {
		close(mb)
	}
	if b.smoke {
		if alive < n {
			check("memory: parked goroutines", alive, n)
		}
		ok("memory go: %d parked goroutines", n)
		return
	}
	heap := func(m *runtime.MemStats) float64 {
		return float64(m.HeapInuse + m.StackInuse)
	}
	row("memory", float64(rss1-rss0)/float64(n), "B/receiver", "lower")
	row("memory-heap", (heap(&ms1)-heap(&ms0))/float64(n), "B/receiver", "lower")
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hermes-bench-go full|smoke [SCENARIO...]")
		os.Exit(2)
	}
	b := &bench{sz: full}
	if os.Args[1] == "smoke" {
		b.sz, b.smoke = smoke, true
	}
	scenarios := map[string]func(){
		"pingpong": b.pingpong, "ring": b.ring, "fanin": b.fanin,
		"create": b.create, "churn": b.churn, "timers": b.timers,
		"request": b.request, "memory": b.memory,
	}
	names := os.Args[2:]
	if len(names) == 0 {
		names = []string{"pingpong", "ring", "fanin", "create", "churn",
			"timers", "request", "memory"}
	}
	for _, name := range names {
		run, found := scenarios[name]
		if !found {
			fmt.Fprintf(os.Stderr, "hermes-bench-go: no scenario %q\n", name)
			os.Exit(2)
		}
		run()
	}
}
