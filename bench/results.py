"""Shared by report.py and report_http.py: the raw results of one run
(lines "mode<TAB>metric<TAB>round<TAB>value", value "fail" for a failed
run) and how a cell of the tables shows them."""
import os
import statistics
import time

# Cell formats shared by the reports.
num = lambda v: f"{v:,.0f}"
gbps = lambda v: f"{v:.2f}"
us = lambda v: f"{v:.1f}"


def ms(v):
    return f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def measured_line(env_path):
    """The table's first line: when, and the environment run.sh recorded."""
    return (f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')}; " +
            "; ".join(l.strip() for l in open(env_path) if l.strip()) + ".")


class Results:
    def __init__(self, path):
        self.raw = {}
        for line in open(path):
            mode, metric, _rnd, value = line.rstrip("\n").split("\t")
            self.raw.setdefault((mode, metric), []).append(value)

    def runs(self, mode, metric):
        """(values of the successful runs, number of runs)"""
        vals = self.raw.get((mode, metric), [])
        return [float(v) for v in vals if v != "fail"], len(vals)

    def median(self, mode, metric):
        ok, _ = self.runs(mode, metric)
        return statistics.median(ok) if ok else None

    def cell(self, mode, metric, fmt):
        """median (min–max), noting failed runs"""
        ok, n = self.runs(mode, metric)
        if n == 0:
            return "—"
        if not ok:
            return "failed"
        s = fmt(statistics.median(ok))
        if len(ok) > 1:
            s += f" ({fmt(min(ok))}–{fmt(max(ok))})"
        if len(ok) < n:
            s += f" [{n - len(ok)} of {n} failed]"
        return s


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def cpu_table(res, modes, label):
    """Markdown lines: CPU per keep-alive request of the proxy and journald."""
    out = ["",
           "Where the CPU of a keep-alive request goes: the CPU time the proxy process (all its "
           "threads) and journald used during the keep-alive runs, divided by the requests "
           "served (from /proc, 10 ms ticks; the client and the upstream share the same two "
           "cores).",
           "",
           "| mode | proxy, µs/request | journald, µs/request | both |",
           "|---|--:|--:|--:|"]
    for m in modes:
        if not res.runs(m, "ka_rps")[1]:
            continue
        p, j = res.median(m, "ka_cpu_proxy"), res.median(m, "ka_cpu_journald")
        both = "—" if p is None or j is None else us(p + j)
        out.append(f"| {label.get(m, m)} | {res.cell(m, 'ka_cpu_proxy', us)} | "
                   f"{res.cell(m, 'ka_cpu_journald', us)} | {both} |")
    return out


def bulk_cpu_table(res, modes, label, what):
    """Markdown lines: the CPU a bulk gigabyte costs, and the bound it sets on
    a proxy's bulk against no proxy (what: what the proxy's CPU covers)."""
    runs, median, cell = res.runs, res.median, res.cell

    def f0(v):
        return f"{v:,.0f}"

    def f2(v):
        return f"{v:.2f}"

    def proxy_ms(m):
        u, k = median(m, "bulk_cpu_proxy_user"), median(m, "bulk_cpu_proxy_sys")
        return None if u is None or k is None else (u, k)

    out = ["",
           "Where the CPU of a bulk gigabyte goes: CPU time of the whole machine (every process "
           "and the kernel: client, proxy, server, softirqs) and of the proxy process alone "
           "(user space, and the kernel working for it: its system calls and what they run "
           "inline) during the bulk runs, per GB received (from /proc/stat and /proc/PID/stat, "
           "10 ms ticks); cores busy: how many cores were busy on average.",
           "",
           "| mode | cores busy | machine, CPU ms/GB | proxy, CPU ms/GB | proxy user | proxy system "
           "| the rest (machine − proxy) |",
           "|---|--:|--:|--:|--:|--:|--:|"]
    rows = 0
    for m in modes:
        if not runs(m, "bulk_cpu_machine")[1]:
            continue
        rows += 1
        p = proxy_ms(m)
        both = "—" if p is None else f0(p[0] + p[1])
        mach = median(m, "bulk_cpu_machine")
        rest = "—" if p is None or mach is None else f0(mach - p[0] - p[1])
        user = cell(m, "bulk_cpu_proxy_user", f0) if p else "—"
        syst = cell(m, "bulk_cpu_proxy_sys", f0) if p else "—"
        out.append(f"| {label.get(m, m)} | {cell(m, 'bulk_busy', f2)} | "
                   f"{cell(m, 'bulk_cpu_machine', f0)} | {both} | {user} | {syst} | {rest} |")
    base, busy = median("noproxy", "bulk_cpu_machine"), median("noproxy", "bulk_busy")
    if base is None or not busy or not rows:
        return out
    # With every core busy a mode moves at most cores / (the machine's CPU
    # per GB in that mode).  No proxy moved its bytes at busy / base.  So a
    # proxy whose run costs the machine c per GB reaches at most
    # cores * base / (busy * c) of no proxy, and 0.7x needs
    # c <= cores * base / (0.7 * busy): the proxy's own share of that is
    # what the rest of the machine (about base) leaves.
    cores = os.cpu_count() or 1
    need = cores * base / (0.7 * busy)
    out += ["",
            f"The bound this sets: with all {cores} cores busy, a mode moves at most {cores} / "
            f"(the machine's CPU per GB in that mode).  No proxy moved its bytes with {busy:.2f} "
            f"cores busy at {base:,.0f} ms per GB, so 0.7× of it needs a proxy run that costs "
            f"the machine at most {cores} × {base:,.0f} / (0.7 × {busy:.2f}) = {need:,.0f} ms per "
            f"GB, {what}.  The rest of the machine (client, server, kernel) takes about "
            f"{base:,.0f} of it, which leaves the proxy about {need - base:,.0f}."]
    for m in modes:
        c, p = median(m, "bulk_cpu_machine"), proxy_ms(m)
        if p is None or c is None:
            continue
        out.append(f"- {label.get(m, m)}: the machine spent {c:,.0f} ms per GB, the proxy "
                   f"{p[0] + p[1]:,.0f} of it ({p[1]:,.0f} in the kernel) → at most "
                   f"{cores * base / (busy * c):.2f}× of no proxy with every core busy")
    return out


def conn_cpu_table(res, modes, label, ref="haproxy"):
    """Markdown lines: the CPU a new connection costs, and what matching
    the reference mode's connection rate would allow it."""
    runs, median, cell = res.runs, res.median, res.cell

    def f1(v):
        return f"{v:,.1f}"

    def f2(v):
        return f"{v:.2f}"

    out = ["",
           "Where the CPU of a new connection goes: CPU time of the whole machine (client, "
           "proxy, server, journald, the kernel) and of the proxy process alone (user space and "
           "the kernel working for it) and of journald (which writes the proxy's events) during "
           "the connection-rate runs, per connection (from /proc, 10 ms ticks).",
           "",
           "| mode | cores busy | machine, µs/conn | proxy, µs/conn | proxy user | proxy system "
           "| journald | the rest |",
           "|---|--:|--:|--:|--:|--:|--:|--:|"]
    rows = 0
    for m in modes:
        if not runs(m, "crr_cpu_machine")[1]:
            continue
        rows += 1
        mach = median(m, "crr_cpu_machine")
        u, k = median(m, "crr_cpu_proxy_user"), median(m, "crr_cpu_proxy_sys")
        j = median(m, "crr_cpu_journald")
        p = None if u is None or k is None else u + k
        rest = "—" if mach is None else f1(mach - (p or 0) - (j or 0))
        out.append(f"| {label.get(m, m)} | {cell(m, 'crr_busy', f2)} | {cell(m, 'crr_cpu_machine', f1)} | "
                   f"{'—' if p is None else f1(p)} | "
                   f"{cell(m, 'crr_cpu_proxy_user', f1) if p is not None else '—'} | "
                   f"{cell(m, 'crr_cpu_proxy_sys', f1) if p is not None else '—'} | "
                   f"{cell(m, 'crr_cpu_journald', f1)} | {rest} |")
    rate = median(ref, "crr")
    if not rows or not rate:
        return out
    cores = os.cpu_count() or 1
    budget = cores * 1e6 / rate
    out += ["",
            f"With all {cores} cores busy a mode makes at most {cores} / (the machine's CPU per "
            f"connection) connections per second.  Matching {label.get(ref, ref)}'s {rate:,.0f}/s "
            f"so allows at most {cores} × 10⁶ / {rate:,.0f} = {budget:,.1f} µs of the machine's "
            f"CPU per connection."]
    for m in modes:
        c = median(m, "crr_cpu_machine")
        if c is None or m == ref:
            continue
        out.append(f"- {label.get(m, m)}: {c:,.1f} µs per connection → at most "
                   f"{cores * 1e6 / c:,.0f}/s = {cores * 1e6 / c / rate:.2f}× of "
                   f"{label.get(ref, ref)} with every core busy")
    return out
