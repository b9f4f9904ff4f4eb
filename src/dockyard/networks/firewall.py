"""Isolation between networks, as Docker does it with its two-stage isolation chains.

netavark 1.4 (Debian 12) accepts forwarded traffic from every bridge subnet, so containers on two
different networks could reach each other through the host's routing.  These rules drop it::

    FORWARD -j DOCKYARD-ISOLATION-STAGE-1                  (first, before netavark's own rules)
    DOCKYARD-ISOLATION-STAGE-1 -m conntrack --ctstate DNAT -j RETURN   published ports stay reachable
    DOCKYARD-ISOLATION-STAGE-1 -i BR ! -o BR -j DOCKYARD-ISOLATION-STAGE-2    per bridge
    DOCKYARD-ISOLATION-STAGE-2 -o BR -j DROP                                   per bridge
    (an --internal bridge: DOCKYARD-ISOLATION-STAGE-1 -i BR ! -o BR -j DROP and ! -i BR -o BR -j DROP)

Rules are added when a bridge comes up and removed when netavark has removed it (its last
container left); the jump and the chains go with the last bridge.  Everything is read with one
``iptables -S`` and changed with one ``iptables-restore --noflush``, under the host network lock.
"""

from __future__ import annotations

import subprocess

from dockyard.errors import Unavailable

STAGE1 = "DOCKYARD-ISOLATION-STAGE-1"
STAGE2 = "DOCKYARD-ISOLATION-STAGE-2"
DNAT_RULE = f"-A {STAGE1} -m conntrack --ctstate DNAT -j RETURN"
JUMP = f"-A FORWARD -j {STAGE1}"


def bridge_rules(bridge: str, internal: bool) -> list[str]:
    if internal:
        return [f"-A {STAGE1} -i {bridge} ! -o {bridge} -j DROP", f"-A {STAGE1} ! -i {bridge} -o {bridge} -j DROP"]
    return [f"-A {STAGE1} -i {bridge} ! -o {bridge} -j {STAGE2}", f"-A {STAGE2} -o {bridge} -j DROP"]


def _current() -> list[str]:
    proc = subprocess.run(["iptables", "-w", "-t", "filter", "-S"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable(f"iptables: {proc.stderr.strip()}")
    return proc.stdout.splitlines()


def _apply(lines: list[str]) -> None:
    if not lines:
        return
    script = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
    proc = subprocess.run(["iptables-restore", "-w", "--noflush"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable(f"iptables-restore: {proc.stderr.strip()}")


def _bridges(rules: list[str]) -> list[str]:
    out = []
    for r in rules:
        parts = r.split()
        if r.startswith(f"-A {STAGE1} -i ") and parts[3] not in out:
            out.append(parts[3])
    return out


def isolate(bridge: str, internal: bool) -> None:
    """Make sure ``bridge`` is isolated from the other dockyard bridges (idempotent)."""
    have = _current()
    todo: list[str] = []
    if f"-N {STAGE1}" not in have:
        todo += [f":{STAGE1} - [0:0]", f":{STAGE2} - [0:0]", DNAT_RULE]
    if JUMP not in have:
        todo.append(f"-I FORWARD 1 -j {STAGE1}")
    for rule in bridge_rules(bridge, internal):
        if rule not in have:
            todo.append(rule)
    _apply(todo)


def release(bridge: str, internal: bool) -> None:
    """Drop ``bridge``'s rules; with the last bridge gone, the jump and the chains go too."""
    have = _current()
    todo = [rule.replace("-A ", "-D ", 1) for rule in bridge_rules(bridge, internal) if rule in have]
    remaining = [b for b in _bridges(have) if b != bridge]
    if not remaining and f"-N {STAGE1}" in have:
        if JUMP in have:
            todo.append(f"-D FORWARD -j {STAGE1}")
        todo += [f"-F {STAGE1}", f"-F {STAGE2}", f"-X {STAGE1}", f"-X {STAGE2}"]
    _apply(todo)
