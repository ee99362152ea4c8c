#!/usr/bin/env python3
"""bench/run-http.sh's helpers: parse one wrk output; turn the raw results
into the Markdown tables.

usage: report_http.py wrk WRK-OUTPUT
           prints "req/s p50_ms p99_ms requests bad"; exit 1 when wrk did not
           finish or more than 1 % of the requests failed (non-2xx/3xx or
           socket errors)
       report_http.py base RESULTS.tsv MODE...
           prints the lowest keep-alive req/s median of the MODEs present
           (the base of the fixed loads); exit 1 when none has one
       report_http.py report RESULTS.tsv ENV NOTES LOADS MODE...
           RESULTS.tsv lines: mode, metric (ka_rps ka_p50 ka_p99 ka_busy ka_cpu_machine
           ka_cpu_proxy ka_cpu_proxy_user ka_cpu_proxy_sys
           ka_cpu_journald hcrr ws raw, load<L>_rps load<L>_p50 load<L>_p99
           load<L>_p999 for each fixed load L of LOADS, and "- base_rps"),
           round, value or "fail"
"""
import re

from results import Results, op_cpu_table, gbps, measured_line, ms, num, ratio
import sys

LABEL = {
    "noproxy": "no proxy (routed)",
    "pcl": "**portcullis** (protocol: rest, read-only)",
    "pcl-noident": "portcullis --no-ident (protocol: rest)",
    "pcl-file": "portcullis, events to a file instead of the journal (--no-journal)",
    "haproxy-http": "HAProxy (mode http, nbthread 1)",
    "haproxy-http-log": "HAProxy (mode http, nbthread 1, httplog to the journal)",
}
RAW_LABEL = {
    "pcl": "portcullis, L4 raw relay (allowed_ips endpoint, same daemon)",
    "pcl-noident": "portcullis --no-ident, L4 raw relay",
}
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(path):
    text = open(path).read()
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    lat = {p: float(v) * UNIT_MS[u] for p, v, u in
           re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    if not rps or not total or "50" not in lat or "99" not in lat:
        print(f"report_http.py: cannot parse wrk output {path}", file=sys.stderr)
        return 1
    n = int(total.group(1))
    bad = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        bad += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        bad += sum(int(x) for x in m.groups())
    print(f"{float(rps.group(1)):.0f} {lat['50']:.4f} {lat['99']:.4f} {n} {bad}")
    if n == 0 or bad * 100 > n:
        print(f"report_http.py: {bad} of {n} requests failed ({path})", file=sys.stderr)
        return 1
    return 0


def base(res_path, modes):
    res = Results(res_path)
    rates = [res.median(m, "ka_rps") for m in modes]
    rates = [r for r in rates if r]
    if not rates:
        return 1
    print(f"{min(rates):.0f}")
    return 0


def report(res_path, env_path, notes_path, loads, modes):
    res = Results(res_path)
    runs, median, cell = res.runs, res.median, res.cell

    hp = "haproxy-http"
    out = [measured_line(env_path)]
    out += ["",
            "Small requests (`GET /`, a 200 with a 13-byte body).  Keep-alive: wrk, "
            "the same connections for the whole run; latency percentiles from wrk --latency. "
            "New connections: one request per connection (`Connection: close`), the server "
            "closes first.",
            "",
            "| mode | keep-alive req/s | vs no proxy | vs HAProxy | p50, ms | p99, ms | p99 vs HAProxy "
            "| new conn/s | vs no proxy | vs HAProxy |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for m in modes:
        r, p99, c = median(m, "ka_rps"), median(m, "ka_p99"), median(m, "hcrr")
        out.append(f"| {LABEL.get(m, m)} | {cell(m, 'ka_rps', num)} | {ratio(r, median('noproxy', 'ka_rps'))} | "
                   f"{ratio(r, median(hp, 'ka_rps'))} | {cell(m, 'ka_p50', ms)} | {cell(m, 'ka_p99', ms)} | "
                   f"{ratio(p99, median(hp, 'ka_p99'))} | {cell(m, 'hcrr', num)} | "
                   f"{ratio(c, median('noproxy', 'hcrr'))} | {ratio(c, median(hp, 'hcrr'))} |")

    out += op_cpu_table(res, modes, LABEL, "ka", "ka_rps", "keep-alive request", "haproxy-http")

    base_rps = median("-", "base_rps")
    loads = [l for l in loads.split() if base_rps and runs(modes[0], f"load{l}_p99")[1]]
    if loads:
        out += ["",
                "Latency at the same offered load: wrk above runs every mode at its own "
                "saturation (a closed loop: the next request leaves when the last answer came), "
                "so its percentiles compare different loads.  Here every mode gets the same fixed "
                f"request rate, fractions of the lower keep-alive rate of portcullis and HAProxy "
                f"({base_rps:,.0f}/s), from `tcpbench hrate`: an open loop over "
                "the same number of keep-alive connections as wrk, one request scheduled every "
                "1/rate s, round robin; latency runs from a request's scheduled time to its "
                "response's last byte, so a stall counts for every request it delays.",
                "",
                "| offered load | mode | served req/s | p50, ms | p99, ms | p99.9, ms | p99 vs HAProxy |",
                "|---|---|--:|--:|--:|--:|--:|"]
        for l in loads:
            rate = int(base_rps * float(l))
            for m in modes:
                p99 = median(m, f"load{l}_p99")
                out.append(f"| {rate:,}/s ({l}×) | {LABEL.get(m, m)} | {cell(m, f'load{l}_rps', num)} | "
                           f"{cell(m, f'load{l}_p50', ms)} | {cell(m, f'load{l}_p99', ms)} | "
                           f"{cell(m, f'load{l}_p999', ms)} | {ratio(p99, median(hp, f'load{l}_p99'))} |")

    out += ["",
            "WebSocket bulk: the opening handshake (GET /ws, Upgrade: websocket) through the "
            "mode, then one stream of masked binary frames client → server for the run; "
            "the clock starts after the 101.  The L4 raw relay row is the plain TCP bulk of "
            "`run.sh` through the same daemon and sandbox (an address-only endpoint), run "
            "right after the WebSocket run of each round.",
            "",
            "| mode | Gbit/s after the 101 | vs no proxy | vs HAProxy | vs portcullis L4 raw relay |",
            "|---|--:|--:|--:|--:|"]
    ref_raw = median("pcl", "raw") if "pcl" in modes else None
    for m in modes:
        if not runs(m, "ws")[1]:
            continue
        w = median(m, "ws")
        own_raw = median(m, "raw")
        out.append(f"| {LABEL.get(m, m)} | {cell(m, 'ws', gbps)} | {ratio(w, median('noproxy', 'ws'))} | "
                   f"{ratio(w, median(hp, 'ws'))} | "
                   f"{ratio(w, own_raw if own_raw is not None else ref_raw)} |")
        if m in RAW_LABEL and runs(m, "raw")[1]:
            out.append(f"| {RAW_LABEL[m]} | {cell(m, 'raw', gbps)} | {ratio(own_raw, median('noproxy', 'ws'))} | "
                       f"{ratio(own_raw, median(hp, 'ws'))} | 1.00× |")
    out += ["",
            "Median of the rounds (min–max in parentheses); ratios are of medians from this same run. "
            "For the portcullis rows the last column compares with the same daemon's raw relay; "
            "for the others, with the default portcullis daemon's."]

    if "pcl" in modes:
        def verdict(ok):
            return "n/a" if ok is None else ("**met**" if ok else "**not met**")

        r, p99, w = median("pcl", "ka_rps"), median("pcl", "ka_p99"), median("pcl", "ws")
        out += ["", "Targets of issue 3 (portcullis, default settings):"]
        if hp in modes:
            hr, hp99 = median(hp, "ka_rps"), median(hp, "ka_p99")
            out.append(f"- keep-alive requests/s ≥ HAProxy's HTTP mode: {ratio(r, hr)} → "
                       f"{verdict(None if r is None or hr is None else r >= hr)}")
            for l in loads:
                a, b = median("pcl", f"load{l}_p99"), median(hp, f"load{l}_p99")
                out.append(f"- p99 latency ≤ HAProxy's at the same load, {int(base_rps * float(l)):,} "
                           f"req/s offered to both: {'—' if a is None else ms(a)} ms vs "
                           f"{'—' if b is None else ms(b)} ms → "
                           f"{verdict(None if a is None or b is None else a <= b)}")
            out.append(f"- (at saturation, wrk's closed loop: each mode at its own rate, the same "
                       f"connections in flight) p99 {'—' if p99 is None else ms(p99)} ms vs "
                       f"{'—' if hp99 is None else ms(hp99)} ms")
        out.append(f"- WebSocket bulk ≥ 0.9× the raw relay: {ratio(w, ref_raw)} → "
                   f"{verdict(None if w is None or ref_raw is None else w >= 0.9 * ref_raw)}")
        if hp in modes and "noproxy" in modes:
            out.append(f"- (no target) HAProxy's HTTP mode vs no proxy, keep-alive: "
                       f"{ratio(median(hp, 'ka_rps'), median('noproxy', 'ka_rps'))} "
                       f"(the issue expects about 0.5× on this machine); portcullis new conn/s vs "
                       f"HAProxy: {ratio(median('pcl', 'hcrr'), median(hp, 'hcrr'))}")

    notes = [l.rstrip() for l in open(notes_path) if l.strip()]
    if notes:
        out += ["", "Notes:", "```"] + notes + ["```"]
    print("\n".join(out))
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "wrk":
        return parse_wrk(sys.argv[2])
    if len(sys.argv) >= 3 and sys.argv[1] == "base":
        return base(sys.argv[2], sys.argv[3:])
    if len(sys.argv) >= 6 and sys.argv[1] == "report":
        return report(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
