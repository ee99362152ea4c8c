# bench/cpu.sh (sourced by run.sh and lib.sh): CPU accounting from /proc, in
# clock ticks (10 ms here), for the tables that say where the CPU goes.

# cpu_ticks PID: CPU time (user + system, all threads) the process has used,
# in clock ticks; empty when there is no such process.
cpu_ticks() {
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 0
    # after "PID (comm) ", utime and stime are the 12th and 13th fields
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'
}

# machine_ticks: "BUSY TOTAL", the clock ticks all CPUs have spent busy (user,
# nice, system, irq, softirq, steal) and in all, from /proc/stat.
machine_ticks() {
    awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit}' /proc/stat
}

# cpu_ticks_split PID: "USER SYSTEM", as cpu_ticks but apart.
cpu_ticks_split() {
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 0
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12, $13}'
}

# cpu_per_op BEFORE AFTER OPS: microseconds of CPU per operation, or "fail".
cpu_per_op() {
    if [ -z "$1" ] || [ -z "$2" ] || [ "${3:-0}" -le 0 ] 2>/dev/null; then
        echo fail
        return
    fi
    awk -v b="$1" -v a="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f\n", (a - b) * 1e6 / hz / n}'
}

# bulk_cpu MACHINE_BEFORE MACHINE_AFTER PROXY_BEFORE PROXY_AFTER BYTES: prints
# "BUSY MACHINE USER SYSTEM" for one bulk run: cores busy on average, CPU ms
# per GB of the whole machine, and of the proxy in user space and in the
# kernel ("- -" without a proxy).  The first four are machine_ticks and
# cpu_ticks_split outputs.
bulk_cpu() {
    awk -v mb="$1" -v ma="$2" -v pb="${3:-x}" -v pa="${4:-x}" -v n="$5" \
        -v hz="$(getconf CLK_TCK)" -v cpus="$(nproc)" 'BEGIN {
            split(mb, b, " "); split(ma, a, " "); split(pb, p0, " "); split(pa, p1, " ")
            busy = a[1] - b[1]; all = a[2] - b[2]; gb = n / 1e9
            printf "%.2f %.1f", (all > 0 ? busy / all * cpus : 0), busy * 1e3 / hz / gb
            if (pb == "x" || pa == "x") print " - -"
            else printf " %.1f %.1f\n", (p1[1] - p0[1]) * 1e3 / hz / gb, (p1[2] - p0[2]) * 1e3 / hz / gb
        }'
}

# op_cpu MACHINE_BEFORE MACHINE_AFTER PROXY_BEFORE PROXY_AFTER
#        JOURNALD_BEFORE JOURNALD_AFTER OPS: prints "BUSY MACHINE USER SYSTEM
# JOURNALD" for one run of OPS connections or requests: cores busy on
# average, CPU µs per operation of the whole machine, of the proxy in user
# space and in the kernel ("- -" without a proxy), and of journald ("-" when
# it is not running).  As bulk_cpu; the journald pair is cpu_ticks.
op_cpu() {
    awk -v mb="$1" -v ma="$2" -v pb="${3:-x}" -v pa="${4:-x}" -v jb="${5:-x}" -v ja="${6:-x}" \
        -v n="$7" -v hz="$(getconf CLK_TCK)" -v cpus="$(nproc)" 'BEGIN {
            split(mb, b, " "); split(ma, a, " "); split(pb, p0, " "); split(pa, p1, " ")
            busy = a[1] - b[1]; all = a[2] - b[2]; us = 1e6 / hz / n
            printf "%.2f %.1f", (all > 0 ? busy / all * cpus : 0), busy * us
            if (pb == "x" || pa == "x") printf " - -"
            else printf " %.1f %.1f", (p1[1] - p0[1]) * us, (p1[2] - p0[2]) * us
            if (jb == "x" || ja == "x") print " -"
            else printf " %.1f\n", (ja - jb) * us
        }'
}

# perf_sample PID DATA SECONDS: a second into a client run of SECONDS, the
# call graphs of PID until a second before its end, into DATA (BENCH_PERF).
perf_sample() {
    sleep 1
    perf record -q --call-graph dwarf,16384 -F 499 -p "$1" -o "$2" \
        -- sleep $(($3 > 3 ? $3 - 2 : 1)) >/dev/null 2>&1
}

# perf_note MODE WHAT DATA: the notes' paragraph on one profile.
perf_note() {
    echo "perf record --call-graph dwarf -p <$1's pid> during $2: share of its CPU in each named function and its callees"
    perf_top "$3"
}

# perf_top DATA: the inclusive ("children") share of the named user-space
# functions in a `perf record --call-graph` file, for the BENCH_PERF notes.
perf_top() { # DATA: inclusive ("children") share of the named user-space functions
    # What each step costs with everything it calls.  Debian's libcrypto has
    # no names for its internal functions; those and the outer loop (main, the
    # event loop) are left out.
    perf report -i "$1" --stdio --children --sort symbol -g none --percent-limit 2.5 2>/dev/null |
        grep -F '[.]' | grep -v '\] 0x' |
        sed -E 's/^ *([0-9.]+%) +[0-9.]+% +\[.\] (.*[^ ]) +- +- *$/\1 \2/' |
        grep -Ev ' (main|uv_run|run_poll_loop|_start|__libc_start_(call_)?main|__libc_start_main_impl|entry_SYSCALL_64_after_hwframe|do_syscall_64|process_runnable_tasks|run_tasks_from_lists)( \(inlined\))?$' |
        head -24 | sed 's/^/    /'
}
