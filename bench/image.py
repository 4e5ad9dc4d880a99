"""Two builds of the container image side by side: size, `kit serve`'s cold start and its memory.

    .venv/bin/python bench/image.py --before localhost/kit-image-before:1 --after localhost/kit-image-test:latest

Both images are run with podman (runc, as tests/image does), in alternation, --rounds times each:
- size as podman reports it, and the size without the language model (its GGUF files);
- cold start: `podman run` to `/` answering, then to the first API answer (a whole answer, not streamed);
- RSS of `kit serve` (the container's PID 1) after that answer.
Prints the figures and the ratios after/before, measured in the same run.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import time

import httpx

PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
KEY = "bench-key"
QUESTION = {"messages": [{"role": "user", "content": "How long do returns take?"}]}


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


GGUF_BYTES = "import pathlib; print(sum(p.stat().st_size for p in pathlib.Path('/opt/kit').rglob('*.gguf')))"


def sizes(image: str) -> tuple[float, float]:
    """(whole image, without the language model: its GGUF files and adapters) in MB."""
    total = int(sh("podman", "image", "inspect", "--format", "{{.Size}}", image).strip())
    gguf = int(sh(*PODMAN, "run", "--rm", *LIMITS, "--entrypoint", "python3", image, "-c", GGUF_BYTES).strip())
    return total / 1e6, (total - gguf) / 1e6


def run_once(image: str) -> tuple[float, float, float]:
    """(seconds to / answering, seconds to the first answer, RSS MB after it)."""
    name, port = f"kit-bench-{int(time.time() * 1000)}", free_port()
    creds = ["-e", f"KIT_API_KEY={KEY}", "-e", "KIT_UI_USER=shop", "-e", "KIT_UI_PASSWORD=bench-password"]
    started = time.monotonic()
    sh(*PODMAN, "run", "-d", "--name", name, *LIMITS, "-p", f"127.0.0.1:{port}:7860", *creds, image)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 300:
                raise TimeoutError(f"{image} did not answer / within 300 s")
            time.sleep(0.2)
        listening = time.monotonic() - started
        answer = httpx.post(
            f"{url}/v1/chat/completions", json=QUESTION, headers={"Authorization": f"Bearer {KEY}"}, timeout=180
        )
        answer.raise_for_status()
        first = time.monotonic() - started
        status = sh("podman", "exec", name, "cat", "/proc/1/status")
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
        return listening, first, rss
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "5", name], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    images = {"before": args.before, "after": args.after}
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in images}
    for _ in range(args.rounds):
        for key, image in images.items():
            runs[key].append(run_once(image))
    rows = {}
    for key, image in images.items():
        total, no_model = sizes(image)
        listening, first, rss = (statistics.median(r[i] for r in runs[key]) for i in range(3))
        rows[key] = (total, no_model, listening, first, rss)
    print(f"median of {args.rounds} runs each, alternating; load average {open('/proc/loadavg').read().split()[0]}")
    print("| image | size MB | without the language model MB | run to / s | run to first answer s | RSS MB |")
    print("|---|---|---|---|---|---|")
    for key, image in images.items():
        total, no_model, listening, first, rss = rows[key]
        print(f"| {key} ({image}) | {total:,.0f} | {no_model:,.0f} | {listening:.1f} | {first:.1f} | {rss:,.0f} |")
    b, a = rows["before"], rows["after"]
    ratios = " | ".join(f"{a[i] / b[i]:.2f}x" for i in range(5))
    print(f"| after / before | {ratios} |")


if __name__ == "__main__":
    main()
