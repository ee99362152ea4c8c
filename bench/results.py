"""Shared by report.py and report_http.py: the raw results of one run
(lines "mode<TAB>metric<TAB>round<TAB>value", value "fail" for a failed
run) and how a cell of the tables shows them."""
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
