"""Shared by report.py and report_http.py: the raw results of one run
(lines "mode<TAB>metric<TAB>round<TAB>value", value "fail" for a failed
run) and how a cell of the tables shows them."""
import os
import statistics
import time

# Cell formats shared by the reports.
num = lambda v: f"{v:,.0f}"
gbps = lambda v: f"{v:.2f}"
us = lambda v: f"{v:,.1f}"
cores_busy = lambda v: f"{v:.2f}"


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


def bulk_cpu_table(res, modes, label, what):
    """Markdown lines: the CPU a bulk gigabyte costs, and the bound it sets on
    a proxy's bulk against no proxy (what: what the proxy's CPU covers)."""
    runs, median, cell = res.runs, res.median, res.cell

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
        both = "—" if p is None else num(p[0] + p[1])
        mach = median(m, "bulk_cpu_machine")
        rest = "—" if p is None or mach is None else num(mach - p[0] - p[1])
        user = cell(m, "bulk_cpu_proxy_user", num) if p else "—"
        syst = cell(m, "bulk_cpu_proxy_sys", num) if p else "—"
        out.append(f"| {label.get(m, m)} | {cell(m, 'bulk_busy', cores_busy)} | "
                   f"{cell(m, 'bulk_cpu_machine', num)} | {both} | {user} | {syst} | {rest} |")
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


def op_cpu_table(res, modes, label, prefix, rate_metric, what, ref):
    """Markdown lines: the CPU one operation (what: "connection", "request")
    costs the machine, the proxy and journald, from the PREFIX_busy,
    PREFIX_cpu_machine, PREFIX_cpu_proxy_user, PREFIX_cpu_proxy_sys and
    PREFIX_cpu_journald metrics; then what matching ref's rate (its
    rate_metric) would leave a proxy that writes one journal entry per
    operation."""
    runs, median, cell = res.runs, res.median, res.cell

    def parts(m):
        mach = median(m, f"{prefix}_cpu_machine")
        u, k = median(m, f"{prefix}_cpu_proxy_user"), median(m, f"{prefix}_cpu_proxy_sys")
        j = median(m, f"{prefix}_cpu_journald")
        p = None if u is None or k is None else u + k
        rest = None if mach is None else mach - (p or 0) - (j or 0)
        return mach, p, j, rest

    out = ["",
           f"Where the CPU of a {what} goes: CPU time of the whole machine (client, proxy, "
           f"server, journald, the kernel), of the proxy process alone (user space, and the "
           f"kernel working for it) and of journald (which stores the proxy's events), per "
           f"{what} (from /proc, 10 ms ticks); cores busy: how many cores were busy on average.",
           "",
           f"| mode | cores busy | machine, µs/{what} | proxy | proxy user | proxy system "
           f"| journald | the rest |",
           "|---|--:|--:|--:|--:|--:|--:|--:|"]
    rows = 0
    for m in modes:
        if not runs(m, f"{prefix}_cpu_machine")[1]:
            continue
        rows += 1
        mach, p, j, rest = parts(m)
        out.append(f"| {label.get(m, m)} | {cell(m, f'{prefix}_busy', cores_busy)} | "
                   f"{cell(m, f'{prefix}_cpu_machine', us)} | {'—' if p is None else us(p)} | "
                   f"{cell(m, f'{prefix}_cpu_proxy_user', us) if p is not None else '—'} | "
                   f"{cell(m, f'{prefix}_cpu_proxy_sys', us) if p is not None else '—'} | "
                   f"{cell(m, f'{prefix}_cpu_journald', us)} | {'—' if rest is None else us(rest)} |")
    rate = median(ref, rate_metric)
    _, ref_p, _, ref_rest = parts(ref)
    journald = median("pcl", f"{prefix}_cpu_journald")
    if not rows or not rate or ref_p is None or ref_rest is None:
        return out
    cores = os.cpu_count() or 1
    budget = cores * 1e6 / rate
    out += ["",
            f"With all {cores} cores busy a mode serves at most {cores} × 10⁶ / (the machine's µs "
            f"per {what}) {what}s per second, so matching {label.get(ref, ref)}'s {rate:,.0f}/s "
            f"allows the machine {budget:,.1f} µs per {what}."]
    if journald:
        left = budget - ref_rest - journald
        out.append(f"In that run the client, the server and the kernel outside the proxy took "
                   f"{ref_rest:,.1f} of them; journald spends {journald:,.1f} µs on each event "
                   f"(portcullis' run), one per {what} by the journal contract.  That leaves a "
                   f"proxy that logs every {what} {left:,.1f} µs of its own, where "
                   f"{label.get(ref, ref)}, logging nothing, spent {ref_p:,.1f}.")
    for m in modes:
        c = median(m, f"{prefix}_cpu_machine")
        if c is None or m == ref:
            continue
        out.append(f"- {label.get(m, m)}: {c:,.1f} µs per {what} → at most {cores * 1e6 / c:,.0f}/s "
                   f"= {cores * 1e6 / c / rate:.2f}× of {label.get(ref, ref)} with every core busy")
    return out
