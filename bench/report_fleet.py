"""BENCHMARKS.md and console lines of scenario 12 (a fleet through Mosquitto and a
share group of collectors into one lake)."""

from __future__ import annotations

from typing import Any


def _name(key: str) -> str:
    return "floor: 1 paho subscriber, fsync" if key == "floor" else \
        f"{key[1:]} collector{'s' if key != 'c1' else ''}"


def _ratio(v: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    from bench.common import summary

    pairs = zip(v["files_s"]["runs"], floor["files_s"]["runs"], strict=False)
    return summary([a / b for a, b in pairs])


def _throughput_rows(fleet: dict[str, Any]) -> list[list[str]]:
    from bench.report import n, spread

    rows = []
    for key, v in fleet.items():
        ok = sum(v["complete"])
        rows.append([
            _name(key), spread(v["files_s"], lambda x: n(x, 1)),
            spread(v["mb_s"], lambda x: n(x, 1)),
            "1" if key == "floor" else spread(_ratio(v, fleet["floor"]), lambda x: n(x, 2)),
            f"{n(v['put_p50']['median'], 1)} / {n(v['put_p99']['median'], 1)}",
            str(sum(v["resends"])),
            "—" if key == "floor" else f"{ok}/{len(v['complete'])}",
            "—" if key == "floor" else n(v["verify_wall"]["median"], 2)])
    return rows


def _cpu_rows(gateways: str, fleet: dict[str, Any]) -> list[list[str]]:
    from bench.report import n

    def pct(v: dict[str, Any], key: str) -> str:
        share = [c / w for c, w in zip(v[key]["runs"], v["wall"]["runs"], strict=True)]
        return n(100 * sorted(share)[len(share) // 2]) + " %"

    def share(v: dict[str, Any], key: str) -> str:
        return n(100 * v[key]["median"]) + " %" if key in v else "—"

    return [[gateways, _name(key), pct(v, "broker_cpu"), pct(v, "recv_cpu"),
             pct(v, "recv_wait"), pct(v, "sim_cpu"),
             n(100 * v["cpu_share"]["median"] / 2) + " %", share(v, "others"),
             share(v, "host_iowait"), _top_lander(v)] for key, v in fleet.items()]


def _top_lander(v: dict[str, Any]) -> str:
    """The share of the files that the busiest collector landed (median over runs)."""
    shares = sorted(max(c["landed_by"]) / max(1, sum(c["landed_by"]))
                    for c in v["counters"] if len(c.get("landed_by", [])) > 1)
    return f"{100 * shares[len(shares) // 2]:.0f} %" if shares else "—"


def _verify_rows(verify: dict[str, Any]) -> list[list[str]]:
    from bench.report import n

    return [[f"{v['files']:,} ({v['gateways']:,} gateways)",
             n(v["verify"]["median"], 2), n(v["files_s"]["median"]),
             n(v["deep"]["median"], 2), n(v["floor"]["median"], 2),
             n(v["verify"]["median"] / v["floor"]["median"], 2)] for v in verify.values()]


def markdown(sc: dict[str, Any]) -> list[str]:
    from bench.report import table

    if "12" not in sc:
        return []
    s = sc["12"]
    out = [
        "### 12. Fleet: gateways → Mosquitto → a share group of collectors → lake", "",
        f"{s['total_files']:,} bronze files of {s['file_bytes'] / 1024:.0f} KiB (real Parquet "
        "and manifest) shipped by N simulated gateways at once, each gateway with its own "
        "connection and the agent's `MqttShipper` (one thread per gateway, "
        f"{s['sim_processes']} simulator processes), to one Mosquitto on 127.0.0.1 and 1, 2 "
        "or 4 `edge-agent collect` processes in one share group (one staging dir, one lake). "
        "Baseline, same run and same gateways: one plain paho subscriber that writes each "
        "file and manifest with fsync and acks it. files/s and MB/s = files / wall time from "
        "the first put to the last ack; put = first chunk → ack, resends included; complete "
        "= every file in the lake and `edge-agent lake verify` exit 0.", ""]
    header = ["receiver", "files/s", "MB/s", "ratio to floor", "put p50 / p99 s",
              "resends", "complete", "verify s"]
    for gateways, fleet in s["fleets"].items():
        out += [f"N = {int(gateways):,} gateways:", ""]
        out += table(header, _throughput_rows(fleet))
    out += ["CPU over the shipping window, as a share of one core (the machine has 2); "
            "run-queue wait = the receivers were runnable but no core was free; other work = "
            "the machine's busy time (/proc/stat) not spent by these processes (the machine "
            "is shared); iowait = both cores idle with I/O outstanding; busiest collector = "
            "the share of the files one member of the group landed:", ""]
    rows = [r for g, fleet in s["fleets"].items() for r in _cpu_rows(g, fleet)]
    out += table(["N", "receiver", "broker", "receivers", "receivers' run-queue wait",
                  "simulators", "these, of 2 cores", "other work, of 2 cores", "iowait",
                  "busiest collector"], rows)
    if s.get("verify"):
        out += ["`lake verify` on fleet-shaped lakes (small files, one source and table per "
                "gateway) against the walk-and-parse floor of scenario 11:", ""]
        out += table(["files", "verify s", "files/s", "--deep s", "floor s", "ratio"],
                     _verify_rows(s["verify"]))
    return out


def console(sc: dict[str, Any]) -> list[str]:
    if "12" not in sc:
        return []
    lines = []
    for gateways, fleet in sc["12"]["fleets"].items():
        parts = ", ".join(f"{k} {v['files_s']['median']:.0f} files/s "
                          f"({v['mb_s']['median']:.1f} MB/s)" for k, v in fleet.items())
        lines.append(f"  12 fleet N={gateways}: {parts}")
    for v in sc["12"].get("verify", {}).values():
        lines.append(f"  12 lake verify {v['files']:,} files: {v['verify']['median']:.2f} s")
    return lines
