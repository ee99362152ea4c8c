#!/usr/bin/env python3
"""Turn bench/run.sh's raw results into the Markdown table.

usage: report.py RESULTS.tsv ENV NOTES IDLE_N MODE...
RESULTS.tsv lines: mode, metric (bulk | crr | rss_before | rss_idle | rss_hwm | bulk_busy |
bulk_cpu_machine | bulk_cpu_proxy_user | bulk_cpu_proxy_sys | crr_busy | crr_cpu_machine |
crr_cpu_proxy_user | crr_cpu_proxy_sys | crr_cpu_journald), round, value or "fail".
"""

from results import Results, bulk_cpu_table, op_cpu_table, gbps, measured_line, num, ratio
import sys

LABEL = {
    "noproxy": "no proxy (routed)",
    "pcl": "**portcullis**",
    "pcl-noident": "portcullis --no-ident",
    "pcl-file": "portcullis, events to a file instead of the journal (--no-journal)",
    "pcl-nosplice": "portcullis --no-splice (copy path)",
    "haproxy": "HAProxy (TCP, nbthread 1)",
    "haproxy-splice": "HAProxy (TCP, nbthread 1, splice-auto)",
    "haproxy-log": "HAProxy (TCP, nbthread 1, one journal line per connection)",
}


def main():
    res_path, env_path, notes_path, idle_n = sys.argv[1:5]
    modes = sys.argv[5:]
    idle_n = int(idle_n)
    res = Results(res_path)
    runs, median, cell = res.runs, res.median, res.cell

    ref_np = {m: median("noproxy", m) for m in ("bulk", "crr")}
    ref_hp = {m: median("haproxy", m) for m in ("bulk", "crr")}

    def mem(mode):
        before, _ = runs(mode, "rss_before")
        idle, n = runs(mode, "rss_idle")
        hwm, _ = runs(mode, "rss_hwm")
        if n == 0:
            return "—", "—", None
        if not idle or not before:
            return "failed", "failed", None
        per = (idle[0] - before[0]) / idle_n
        return (f"{idle[0] / 1024:.1f} MiB (peak {hwm[0] / 1024:.1f})" if hwm else f"{idle[0] / 1024:.1f} MiB",
                f"{per:.1f} KiB", per)

    out = []
    out.append(measured_line(env_path))
    out.append("")
    out.append(f"| mode | bulk, Gbit/s | vs no proxy | vs HAProxy | new conn/s | vs no proxy | vs HAProxy "
               f"| RSS with {idle_n} idle conns | per idle conn |")
    out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    per_conn = {}
    for m in modes:
        b, c = median(m, "bulk"), median(m, "crr")
        rss, per_s, per = mem(m)
        per_conn[m] = per
        out.append(f"| {LABEL.get(m, m)} | {cell(m, 'bulk', gbps)} | {ratio(b, ref_np['bulk'])} | "
                   f"{ratio(b, ref_hp['bulk'])} | {cell(m, 'crr', num)} | {ratio(c, ref_np['crr'])} | "
                   f"{ratio(c, ref_hp['crr'])} | {rss} | {per_s} |")
    out.append("")
    out.append("Median of the rounds (min–max in parentheses); ratios are of medians from this same run. "
               "RSS: VmRSS of the proxy process with the idle connections open (peak VmHWM in parentheses); "
               "per idle conn = (VmRSS with them − VmRSS before) / "
               f"{idle_n}.")
    out += bulk_cpu_table(res, modes, LABEL, "moving every byte through a second TCP connection included")
    out += op_cpu_table(res, modes, LABEL, "crr", "crr", "connection", "haproxy")

    if "pcl" in modes:
        out.append("")
        out.append("Targets of issue 2 (portcullis, default settings):")
        b, c = median("pcl", "bulk"), median("pcl", "crr")

        def verdict(ok):
            return "n/a" if ok is None else ("**met**" if ok else "**not met**")

        def ge(a, b, k=1.0):
            return None if a is None or b is None else a >= k * b

        if "haproxy" in modes:
            out.append(f"- bulk ≥ HAProxy: {ratio(b, ref_hp['bulk'])} → {verdict(ge(b, ref_hp['bulk']))}")
            out.append(f"- new connections/s ≥ HAProxy: {ratio(c, ref_hp['crr'])} → "
                       f"{verdict(ge(c, ref_hp['crr']))}")
        if "noproxy" in modes:
            out.append(f"- bulk ≥ 0.7× no proxy (splice): {ratio(b, ref_np['bulk'])} → "
                       f"{verdict(ge(b, ref_np['bulk'], 0.7))}")
        p = per_conn.get("pcl")
        out.append(f"- ≤ 16 KiB per idle connection: "
                   f"{'—' if p is None else f'{p:.1f} KiB'} → {verdict(None if p is None else p <= 16)}")

    notes = [l.rstrip() for l in open(notes_path) if l.strip()]
    if notes:
        out.append("")
        out.append("Notes:")
        out.append("```")
        out.extend(notes)
        out.append("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
