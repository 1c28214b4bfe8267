"""The sweep lines of the memcached comparison, shared by bench-memcached.sh and compare.sh: the highest rate a
server served within the SLO, and the highest it kept up with, from `ixbench memcached --sweep --json` rows
(one per offered rate), and the per-rate medians of several sweeps of the same rates."""
import statistics


def max_under(rows, slo=500.0):
    """The highest achieved rate whose p99 is under `slo` us, with no errors and nothing unsent (0.0: none)."""
    ok = [r for r in rows if r.get("errors", 0) == 0 and r["p99"] <= slo and r.get("unsent", 0) == 0]
    return max((r["achieved"] for r in ok), default=0.0)


def max_sustained(rows):
    """No latency bound: the highest rate the server kept up with (as the plot's "kept up": >= 95% of the offered
    rate, <= 0.1% unsent, no errors)."""
    ok = [r for r in rows if r.get("errors", 0) == 0 and r["achieved"] >= 0.95 * r["offered"]
          and r.get("unsent", 0) * 1000 <= r.get("requests", 0)]
    return max((r["achieved"] for r in ok), default=0.0)


def median_rows(sweeps):
    """One sweep from several of the same rates: per offered rate, the median of each figure over the sweeps that
    measured it (a burst of other work over one sweep's point then moves that point's median little)."""
    by_rate = {}
    for rows in sweeps:
        for r in rows or []:
            by_rate.setdefault(r["offered"], []).append(r)
    out = []
    for offered in sorted(by_rate):
        points = by_rate[offered]
        keys = set.intersection(*(set(k for k, v in p.items() if isinstance(v, (int, float))) for p in points))
        out.append({k: statistics.median(p[k] for p in points) for k in keys} | {"offered": offered,
                                                                                "sweeps": len(points)})
    return out
