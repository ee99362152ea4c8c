"""Shared by report.py and report_http.py: the raw results of one run
(lines "mode<TAB>metric<TAB>round<TAB>value", value "fail" for a failed
run) and how a cell of the tables shows them."""
import statistics


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
