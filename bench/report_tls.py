#!/usr/bin/env python3
"""bench/run-tls.sh's report: the raw results → the Markdown tables and the
verdict on issue 4's targets.

usage: report_tls.py report RESULTS.tsv ENV NOTES MODE...
    RESULTS.tsv lines: mode, metric, round, value or "fail".  Metrics per
    round: hs_rps hs_p50 hs_p99 hs_done hs_errors hs_resumed (tcpbench
    tlscrr: a new TLS connection with a full handshake per request),
    hs_conns (client connections counted in nat PREROUTING during the hs
    run), hs_up hs_up_resumed (connections nginx saw, and how many of them
    resumed a session), ka_rps ka_p50 ka_p99 ka_busy ka_cpu_machine ka_cpu_proxy
    ka_cpu_proxy_user ka_cpu_proxy_sys ka_cpu_journald (wrk keep-alive), bulk (Gbit/s),
    bulk_busy (cores busy) bulk_cpu_machine bulk_cpu_proxy_user bulk_cpu_proxy_sys
    (CPU ms per GB).
    Round 0 (pcl): leaf_hits leaf_misses leaf_entries conns_total wrk_probes.

(wrk's output is parsed by report_http.py wrk.)
"""
import sys

from results import Results, bulk_cpu_table, op_cpu_table, gbps, measured_line, ms, num, ratio

LABEL = {
    "noproxy": "no proxy (TLS end to end, routed)",
    "pcl": "**portcullis** (protocol: rest, access: full; terminate + inspect)",
    "haproxy-tls": "HAProxy (mode http, ssl both sides, nbthread 1)",
    "haproxy-tls-noreuse": "HAProxy, no-ssl-reuse (every server handshake full)",
    "haproxy-tls-log": "HAProxy, httpslog to the journal",
}
HP = "haproxy-tls"


def main():
    if len(sys.argv) < 5 or sys.argv[1] != "report":
        print(__doc__, file=sys.stderr)
        return 2
    res_path, env_path, notes_path, modes = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
    res = Results(res_path)
    runs, median, cell = res.runs, res.median, res.cell

    def total(mode, metric):
        ok, _ = runs(mode, metric)
        return sum(ok) if ok else None

    def one(mode, metric):
        ok, _ = runs(mode, metric)
        return ok[0] if ok else None

    def verdict(ok):
        return "n/a" if ok is None else ("**met**" if ok else "**not met**")

    out = [measured_line(env_path)]

    # ---- handshakes
    out += ["",
            "New TLS handshakes: `tcpbench tlscrr`, a fixed number of connections in flight; each "
            "one is a new TCP connection and a new TLS session (TLS 1.3, X25519, EC P-256 "
            "certificates; the client never offers a session, so every handshake is a full "
            "one; whether it verifies the certificate and name: see above), then "
            "`GET /` with `Connection: close` (a 13-byte body) until the server's close. "
            "Handshakes/s = completed connections/s; p50/p99 of the whole connection, "
            "connect() to the server's close.  Client resumed: handshakes the client saw "
            "resumed (must be 0).  Conns/handshake: client connections counted in nat "
            "PREROUTING / completed ones (≈1.00; the excess is the connections still in "
            "flight at the end).  Upstream: connections nginx saw per client connection, and "
            "the share of them that resumed a TLS session: a proxy's upstream leg may resume "
            "(HAProxy offers its last server session to every new server connection by "
            "default; no-ssl-reuse turns that off).",
            "",
            "| mode | handshakes/s | vs no proxy | vs HAProxy | p50, ms | p99, ms | p99 vs HAProxy "
            "| client resumed | conns/handshake | upstream conns/conn | upstream resumed |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for m in modes:
        r = median(m, "hs_rps")
        if not runs(m, "hs_rps")[1]:
            continue
        conns, done = total(m, "hs_conns"), total(m, "hs_done")
        up, upr = total(m, "hs_up"), total(m, "hs_up_resumed")
        cres = total(m, "hs_resumed")
        cpr = f"{conns / done:.3f}" if conns is not None and done else "—"
        upc = f"{up / conns:.3f}" if up is not None and conns else "—"
        resumed = f"{upr / up * 100:.0f} %" if up else "—"
        out.append(f"| {LABEL.get(m, m)} | {cell(m, 'hs_rps', num)} | {ratio(r, median('noproxy', 'hs_rps'))} | "
                   f"{ratio(r, median(HP, 'hs_rps'))} | {cell(m, 'hs_p50', ms)} | "
                   f"{cell(m, 'hs_p99', ms)} | {ratio(median(m, 'hs_p99'), median(HP, 'hs_p99'))} | "
                   f"{'—' if cres is None else f'{cres:,.0f}'} | {cpr} | {upc} | {resumed} |")

    # ---- keep-alive
    out += ["",
            f"Keep-alive requests: wrk, the same connections for the whole run (`GET /`, a 13-byte "
            f"body); latency percentiles from wrk --latency, at the same connections in flight.",
            "",
            "| mode | keep-alive req/s | vs no proxy | vs HAProxy | p50, ms | p99, ms | p99 vs HAProxy |",
            "|---|--:|--:|--:|--:|--:|--:|"]
    for m in modes:
        if not runs(m, "ka_rps")[1]:
            continue
        r, p99 = median(m, "ka_rps"), median(m, "ka_p99")
        out.append(f"| {LABEL.get(m, m)} | {cell(m, 'ka_rps', num)} | {ratio(r, median('noproxy', 'ka_rps'))} | "
                   f"{ratio(r, median(HP, 'ka_rps'))} | {cell(m, 'ka_p50', ms)} | {cell(m, 'ka_p99', ms)} | "
                   f"{ratio(p99, median(HP, 'ka_p99'))} |")
    out += op_cpu_table(res, modes, LABEL, "ka", "ka_rps", "keep-alive request", "haproxy-tls")

    # ---- bulk
    out += ["",
            "Bulk: one download (`GET /big`, a sparse file nginx reads without disk I/O) over "
            "one TLS connection with curl, stopped after the run's seconds; Gbit/s = bytes "
            "received / curl's total time.",
            "",
            "| mode | bulk, Gbit/s | vs no proxy | vs HAProxy |",
            "|---|--:|--:|--:|"]
    for m in modes:
        if not runs(m, "bulk")[1]:
            continue
        b = median(m, "bulk")
        out.append(f"| {LABEL.get(m, m)} | {cell(m, 'bulk', gbps)} | {ratio(b, median('noproxy', 'bulk'))} | "
                   f"{ratio(b, median(HP, 'bulk'))} |")
    out += bulk_cpu_table(res, modes, LABEL, "decrypting and re-encrypting every byte and moving it "
                          "through a second TCP connection included")
    out += ["",
            "Median of the rounds (min–max in parentheses); ratios are of medians from this same run."]

    # ---- portcullis' leaf cache
    hits, misses = one("pcl", "leaf_hits"), one("pcl", "leaf_misses")
    conns, probes = one("pcl", "conns_total"), one("pcl", "wrk_probes") or 0
    tls_conns = None if conns is None else conns - probes
    if "pcl" in modes:
        out += ["", "TLS accounting:"]
        if hits is not None:
            out.append(f"- portcullis: its clients opened {conns:,.0f} connections through it over the "
                       f"whole run (readiness check, warm-up, rounds), {probes:,.0f} of them wrk's "
                       f"connection probes (wrk connects and closes once before a run, without TLS): "
                       f"{tls_conns:,.0f} TLS handshakes, all with the SNI up.bench.test.  The daemon's "
                       f"leaf cache, read from its log when it stopped: {hits:,.0f} hits, {misses:,.0f} "
                       f"misses, {one('pcl', 'leaf_entries'):,.0f} entries.")
        else:
            out.append("- portcullis: no leaf cache counters (see the notes).")

    if "pcl" in modes:
        out += ["", "Targets of issue 4 (portcullis, default settings):"]
        h, hh = median("pcl", "hs_rps"), median(HP, "hs_rps")
        k, hk = median("pcl", "ka_rps"), median(HP, "ka_rps")
        b, nb = median("pcl", "bulk"), median("noproxy", "bulk")
        if HP in modes:
            out.append(f"- new TLS handshakes/s ≥ HAProxy's: {ratio(h, hh)} → "
                       f"{verdict(None if h is None or hh is None else h >= hh)}")
            out.append(f"- keep-alive requests/s through termination ≥ HAProxy's: {ratio(k, hk)} → "
                       f"{verdict(None if k is None or hk is None else k >= hk)}")
        if hits is not None:
            ok = misses == 1 and hits == tls_conns - 1
            out.append(f"- a leaf-cache hit for every repeated SNI (misses = 1 distinct SNI, hits = the other "
                       f"{tls_conns - 1:,.0f} handshakes): {misses:,.0f} misses, {hits:,.0f} hits → {verdict(ok)}")
        else:
            out.append("- a leaf-cache hit for every repeated SNI: no counters → n/a")
        if "noproxy" in modes:
            out.append(f"- bulk through termination ≥ 0.7× no-proxy TLS: {ratio(b, nb)} → "
                       f"{verdict(None if b is None or nb is None else b >= 0.7 * nb)}")
        extra = []
        for m, what in (("haproxy-tls-noreuse", "HAProxy with no-ssl-reuse"),
                        ("haproxy-tls-log", "HAProxy logging every request to the journal")):
            if m in modes:
                extra.append(f"handshakes/s vs {what}: {ratio(h, median(m, 'hs_rps'))}")
        if "haproxy-tls-log" in modes:
            extra.append(f"keep-alive vs HAProxy logging every request: "
                         f"{ratio(k, median('haproxy-tls-log', 'ka_rps'))}")
        if HP in modes and "noproxy" in modes:
            extra.append(f"bulk vs HAProxy: {ratio(b, median(HP, 'bulk'))}")
        if extra:
            out.append("- (no target) portcullis " + "; ".join(extra))

    notes = [l.rstrip() for l in open(notes_path) if l.strip()]
    if notes:
        out += ["", "Notes:", "```"] + notes + ["```"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
