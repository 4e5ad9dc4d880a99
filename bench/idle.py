"""Idle CPU of `kit serve`: the share of a core it uses with nobody talking to it, against bare servers.

    .venv/bin/python bench/idle.py                      # example domain, 30 s
    .venv/bin/python bench/idle.py --seconds 60 --domain domains/retail

Starts three servers on 127.0.0.1 and, once all answer, measures them over the same idle window (so the
machine's other load weighs on all alike): `kit serve` on an indexed copy of the domain; a bare uvicorn app
(the floor: uvicorn's own 100 ms tick); a bare Gradio app mounted on FastAPI the same way, with Gradio's
default queue (what kit's UI costs without its slower queue polling). CPU is the process's user+sys
seconds from /proc, as a share of one core; goal for `kit serve` < 1%. Then kit serve's busiest threads,
to find the next thing that polls (name them with `py-spy dump --pid PID`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from load import free_port, prepare

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
BARE = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
app.get("/v1/models")(lambda: {"data": []})
if sys.argv[1] == "gradio":
    import gradio as gr
    with gr.Blocks(analytics_enabled=False) as ui:
        box = gr.Textbox()
        box.submit(lambda text: text, box, box)
    app = gr.mount_gradio_app(app, ui.queue(), path="/")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def cpu_seconds(pid: int, task: str = "") -> float:
    """User + system CPU seconds of a process (all its threads), or of one thread given ``task``."""
    stat = Path(f"/proc/{pid}{f'/task/{task}' if task else ''}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": utime and stime are the 12th and 13th
    return (int(fields[11]) + int(fields[12])) / TICK


def threads(pid: int) -> dict[str, float]:
    """CPU seconds per thread, keyed "tid name" (the main thread runs the event loop)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main (event loop)" if task.name == str(pid) else (task / "comm").read_text().strip()
            found[f"{task.name} {name}"] = cpu_seconds(pid, task.name)
        except OSError:  # the thread ended meanwhile
            continue
    return found


def start(name: str, command: list[str]) -> tuple[str, int, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*command, str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return name, port, proc


def wait_up(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{' '.join(map(str, proc.args))} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", type=Path, default=ROOT / "data_templates" / "example")
    parser.add_argument("--seconds", type=float, default=30, help="idle window measured")
    parser.add_argument("--settle", type=float, default=5, help="seconds after all answer, before measuring")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; domain: {args.domain}; idle window {args.seconds:.0f} s")
    domain = prepare(args.domain, max_tokens=32)
    kit = str(Path(sys.executable).parent / "kit")
    servers = [
        start("kit serve", [kit, "serve", str(domain), "--port"]),
        start("bare uvicorn", [sys.executable, "-c", BARE, "uvicorn"]),
        start("bare Gradio (defaults)", [sys.executable, "-c", BARE, "gradio"]),
    ]
    try:
        measure(servers, args.seconds, args.settle)
    finally:
        for _, _, proc in servers:
            proc.terminate()
        for _, _, proc in servers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(domain.parent, ignore_errors=True)


def measure(servers: list[tuple[str, int, subprocess.Popen]], seconds: float, settle: float) -> None:
    for _, port, proc in servers:
        wait_up(port, proc)
    time.sleep(settle)
    kit_pid = servers[0][2].pid
    before = {name: cpu_seconds(proc.pid) for name, _, proc in servers}
    threads_before, started = threads(kit_pid), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    share = {name: (cpu_seconds(proc.pid) - before[name]) / elapsed for name, _, proc in servers}
    threads_after = threads(kit_pid)
    floor = share["bare uvicorn"]
    for name, value in share.items():
        goal = " (goal < 1%)" if name == "kit serve" else ""
        print(f"{name:>24}: {100 * value:.2f}% of a core, {value / floor:.1f}x bare uvicorn{goal}")
    used = {t: threads_after[t] - threads_before.get(t, 0.0) for t in threads_after}
    busiest = sorted(((t, s) for t, s in used.items() if s > 0), key=lambda item: -item[1])[:3]
    print(f"kit serve (pid {kit_pid}), busiest threads: "
          + (", ".join(f"{t} {100 * s / elapsed:.2f}%" for t, s in busiest) or "none used any"))  # fmt: skip


if __name__ == "__main__":
    main()
