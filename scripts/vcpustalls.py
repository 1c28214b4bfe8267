#!/usr/bin/env python3
"""How much a VM's vCPUs are stalled by its host while all of them are busy: the noise floor of a latency line.

Usage: scripts/vcpustalls.py [SECONDS]   (default 3; prints one line; exit 0)

One spinning process per CPU (0..N-1, pinned) reads the monotonic clock in a loop; a gap of 300 us or more
between two reads is a stall (the vCPU did not run: the host ran something else, or an interrupt storm). On the
2-vCPU VMs of this project one busy vCPU alone sees no such gap in 10 s, while two busy vCPUs lose 40-70 ms per
10 s each in gaps of 0.3-5 ms: the tail of any request that meets one. compare.sh records this at the start and
the end of a run next to the load average, so a lost p99 line can be told from a noisy hour.
"""
import os
import sys
import time

STALL_NS = 300_000


def spin(cpu: int, seconds: float) -> tuple[int, int, int]:
    """Spins on `cpu` for `seconds`: (stalls, ns stalled, longest stall ns)."""
    os.sched_setaffinity(0, {cpu})
    clock = time.monotonic_ns
    end = clock() + int(seconds * 1e9)
    stalls = stalled = longest = 0
    prev = clock()
    while prev < end:
        now = clock()
        gap = now - prev
        if gap >= STALL_NS:
            stalls += 1
            stalled += gap
            longest = max(longest, gap)
        prev = now
    return stalls, stalled, longest


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    cpus = sorted(os.sched_getaffinity(0))
    children = []
    for cpu in cpus:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                result = spin(cpu, seconds)
                os.write(w, (" ".join(map(str, result))).encode())
            except OSError:
                os._exit(1)
            os._exit(0)
        os.close(w)
        children.append((cpu, pid, r))
    parts = []
    for cpu, pid, r in children:
        data = b""
        while chunk := os.read(r, 256):
            data += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if status != 0 or len(data.split()) != 3:
            parts.append(f"cpu{cpu} ? (the spinner failed)")
            continue
        stalls, stalled, longest = map(int, data.split())
        parts.append(f"cpu{cpu} {stalls} stalls, {stalled / 1e6:.1f} ms (longest {longest / 1e6:.2f} ms)")
    print(f"vCPU stalls >= 0.3 ms with every CPU busy for {seconds:g} s: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
