"""The real image: `kit package` builds it with buildah from a debootstrap Debian base, podman runs it.

Run with `make test-image` (tests/image/host_tools.sh installs the tools and caches the base first).
No Docker engine and no registry pull are involved. Timings and the image size are printed (run
pytest with -s to see them), never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REAL_HOME = Path.home()  # read before conftest moves HOME: the base image and pip's wheels are cached there
BASE = os.environ.get("KIT_IMAGE_BASE", "localhost/kit-bookworm-base:1")
TAG = "localhost/kit-image-test:latest"
PODMAN = ["podman", "--runtime", "runc"]
# This machine's kernel and limits: chroot isolation, explicit ulimits; its TLS proxy: a CA bundle for pip.
CA = Path("/etc/ssl/certs/ca-certificates.crt")
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
KEY, USER, PASSWORD = "image-test-key", "shop", "image-test-password"

pytestmark = pytest.mark.image


def sh(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def report(what: str, value: str) -> None:
    print(f"\n[image] {what}: {value}", file=sys.stderr)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example domain, indexed, gated (thresholds it passes) and built by `kit package`."""
    for tool in ("buildah", "podman", "runc"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: run `bash tests/image/host_tools.sh` (make test-image does)")
    if sh("podman", "image", "exists", BASE, check=False).returncode != 0:
        sh("bash", str(ROOT / "tests/image/host_tools.sh"), timeout=900)
    from runtime_fixtures import indexed_copy

    domain = indexed_copy(ROOT / "data_templates" / "example", tmp_path_factory.mktemp("image") / "example")
    spec = yaml.safe_load((domain / "domain.yaml").read_text(encoding="utf-8"))
    # The gate runs for real; these thresholds only make its verdict certain for a 270M base model.
    spec.setdefault("eval", {})["thresholds"] = {
        "answer_correctness": 0, "citation_correctness": 0, "groundedness": 0, "refusal_rate": 0,
        "false_refusal_rate": 1, "handoff_accuracy": 0, "recall_at_k": 0, "invented_facts": 10**6,
        "junk_answers": 10**6, "wrong_yes_no_rate": 1,
    }  # fmt: skip
    (domain / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    wheelhouses = [REAL_HOME / ".cache" / "pip" / "wheels", *map(Path, os.environ.get("PIP_FIND_LINKS", "").split())]
    cmd = [
        sys.executable, "-m", "kit", "package", str(domain), "--tag", TAG, "--base-image", BASE,
        *[a for w in wheelhouses if w.is_dir() for a in ("--wheelhouse", str(w))],
        "--builder-opt=--isolation=chroot", "--builder-opt=--layers",
        *[f"--builder-opt={a}={b}" for a, b in zip(LIMITS[::2], LIMITS[1::2], strict=True)],
    ]  # fmt: skip
    if CA.is_file():
        cmd += [f"--builder-opt=--volume={CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    report("kit package (gate + build)", f"{time.monotonic() - started:.0f} s")
    assert done.returncode == 0, f"kit package failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "licence gemma-3-270m" in done.stdout and f"built {TAG}" in done.stdout and "run it:" in done.stdout
    for part in ("language model and adapters", "embedding model", "index", "kit's code", "without the language model"):
        assert part in done.stdout, part
    size = int(sh("podman", "image", "inspect", "--format", "{{.Size}}", TAG).stdout.strip())
    report("image size", f"{size / 1e9:.2f} GB")
    report("kit package says", "\n" + done.stdout[done.stdout.index(f"built {TAG}") :])
    yield TAG


@dataclass
class Container:
    name: str
    url: str
    cold_start_s: float

    def exec(self, *cmd: str) -> str:
        return sh("podman", "exec", self.name, *cmd).stdout


def wait_ready(name: str, url: str | None, timeout: float = 300) -> float:
    """Seconds until / answers (from the host, or from inside the container when url is None)."""
    started = time.monotonic()
    probe = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=3)"
    while time.monotonic() - started < timeout:
        if url is not None:
            try:
                if httpx.get(url, timeout=3).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
        elif sh("podman", "exec", name, "python3", "-c", probe, check=False).returncode == 0:
            return time.monotonic() - started
        if sh("podman", "inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip() != "true":
            logs = sh("podman", "logs", name, check=False)
            raise AssertionError(f"the container stopped:\n{logs.stdout}\n{logs.stderr}")
        time.sleep(1)
    raise AssertionError(f"{name} did not answer within {timeout} s")


def start(image: str, name: str, *options: str, reach: str = "published") -> Iterator[Container]:
    """Run the image with credentials; reach it on a published 127.0.0.1 port, or only from inside its network."""
    from runtime_fixtures import free_port

    port = free_port()
    creds = ["-e", f"KIT_API_KEY={KEY}", "-e", f"KIT_UI_USER={USER}", "-e", f"KIT_UI_PASSWORD={PASSWORD}"]
    ports = ["-p", f"127.0.0.1:{port}:7860"] if reach == "published" else []
    sh("podman", "rm", "-f", name, check=False)
    sh(*PODMAN, "run", "-d", "--name", name, *LIMITS, *ports, *creds, *options, image)
    url = None
    if reach == "published":
        url = f"http://127.0.0.1:{port}"
    elif reach == "network":
        ip = sh("podman", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
        url = f"http://{ip.stdout.strip()}:7860"
    try:
        cold = wait_ready(name, f"{url}/" if reach == "published" else None)
        yield Container(name, url or "", cold)
    finally:
        sh("podman", "rm", "-f", "-t", "5", name, check=False)


@pytest.fixture(scope="module")
def running(image: str) -> Iterator[Container]:
    """The image with credentials, its port published on 127.0.0.1."""
    for container in start(image, "kit-image-test"):
        report("cold start (run to / answering)", f"{container.cold_start_s:.1f} s")
        yield container


def chat(url: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "example", "messages": [{"role": "user", "content": "How long do returns take?"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120)


def test_the_ui_answers_behind_its_login(running: Container) -> None:
    page = httpx.get(f"{running.url}/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert httpx.get(f"{running.url}/config", timeout=10).status_code == 401
    wrong = httpx.post(f"{running.url}/login", data={"username": USER, "password": "nope"}, timeout=10)
    assert wrong.status_code >= 400
    with httpx.Client(base_url=running.url, timeout=10) as client:
        assert client.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
        assert client.get("/config").status_code == 200


def test_the_api_answers_with_the_key_and_refuses_without(running: Container) -> None:
    assert chat(running.url, None).status_code == 401
    assert chat(running.url, "wrong-key").status_code == 401
    answer = chat(running.url, KEY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["content"].strip() and body["sources"]


def test_it_runs_as_a_non_root_user_and_keeps_feedback_and_logs_on_the_volume(running: Container) -> None:
    uids = next(line for line in running.exec("cat", "/proc/1/status").splitlines() if line.startswith("Uid:"))
    assert uids.split()[1:] == ["10001"] * 4
    assert chat(running.url, KEY).status_code == 200
    data = running.exec("ls", "/data", "/data/logs").split()
    assert "feedback.sqlite3" in data and "kit.log" in data


def test_the_licences_and_the_offline_settings_travel_in_the_image(running: Container) -> None:
    licences = running.exec("ls", "/opt/kit/licences/gemma-3-270m", "/opt/kit/licences/all-MiniLM-L6-v2").split()
    assert {"NOTICE", "GEMMA_TERMS.html", "LICENSE"} <= set(licences)
    env = running.exec("env")
    for setting in ("HF_HUB_OFFLINE=1", "GRADIO_ANALYTICS_ENABLED=False", "ANONYMIZED_TELEMETRY=False"):
        assert setting in env
    manifest = json.loads(running.exec("cat", "/opt/kit/PACKAGE.json"))
    assert manifest["domain"] == "example-shop" and not manifest["unknown_licences"]


# The base install only, less what chromadb pulls in and kit never uses (docker/Dockerfile's LEAVE_OUT).
ABSENT = ("torch", "transformers", "sentence_transformers", "peft", "onnxruntime", "kubernetes", "matplotlib", "pip")


def test_the_image_holds_no_torch_nor_what_kit_never_uses(running: Container) -> None:
    probe = f"import importlib.util as u; print([m for m in {ABSENT!r} if u.find_spec(m)])"
    assert running.exec("python3", "-c", probe).strip() == "[]"
    assert running.exec("kit", "--version").startswith("kit")


def test_the_model_layer_comes_before_the_code_and_the_documents(image: str) -> None:
    """Layers from the oldest: a change of documents or code rebuilds only the layers after the model's."""
    history = sh("podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout.splitlines()[::-1]

    def layer(needle: str) -> int:
        return next(i for i, line in enumerate(history) if needle in line)

    assert layer("/opt/kit/models") < layer("/opt/kit/code") < layer("/opt/kit/domain")


OUTBOUND = "import socket; socket.create_connection(('deb.debian.org', 80), timeout=5)"
ASK_INSIDE = (
    "import json, urllib.request as u\n"
    "body = json.dumps({'messages': [{'role': 'user', 'content': 'How long do returns take?'}]}).encode()\n"
    f"req = u.Request('http://127.0.0.1:7860/v1/chat/completions', body, "
    f"{{'Authorization': 'Bearer {KEY}', 'Content-Type': 'application/json'}})\n"
    "print(json.load(u.urlopen(req, timeout=120))['choices'][0]['message']['content'])\n"
)


def test_it_answers_with_no_network_at_all(image: str) -> None:
    """`--network none`: only loopback exists. podman drops -p in this mode, so the API is asked from inside."""
    for container in start(image, "kit-image-test-none", "--network", "none", reach="inside"):
        assert container.exec("python3", "-c", ASK_INSIDE).strip()
        links = container.exec("cat", "/proc/net/dev")
        assert "lo:" in links and "eth0" not in links
        assert sh("podman", "exec", container.name, "python3", "-c", OUTBOUND, check=False).returncode != 0


@pytest.fixture(scope="module")
def internal_network() -> Iterator[str]:
    name = "kit-image-test-internal"
    sh("podman", "network", "rm", "-f", name, check=False)
    sh("podman", "network", "create", "--internal", name)
    yield name
    sh("podman", "network", "rm", "-f", name, check=False)


ASK_STATUS = (
    "import json, sys, urllib.error, urllib.request as u\n"
    "url, key = sys.argv[1], sys.argv[2]\n"
    "body = json.dumps({'messages': [{'role': 'user', 'content': 'How long do returns take?'}]}).encode()\n"
    "headers = {'Content-Type': 'application/json', **({'Authorization': 'Bearer ' + key} if key else {})}\n"
    "try:\n"
    "    print(u.urlopen(u.Request(url + '/v1/chat/completions', body, headers), timeout=120).status)\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code)\n"
)


def test_on_a_network_without_a_way_out_only_its_port_is_reachable(image: str, internal_network: str) -> None:
    """An --internal network has no route out; a neighbour on that network (a reverse proxy, say) reaches the port.

    The host itself has no address on an internal network's bridge, so the client is a second container.
    """
    for container in start(image, "kit-image-test-internal", "--network", internal_network, reach="network"):
        neighbour = [*PODMAN, "run", "--rm", *LIMITS, "--network", internal_network, "--entrypoint", "python3", image]
        asked = [sh(*neighbour, "-c", ASK_STATUS, container.url, key, timeout=180).stdout.strip() for key in (KEY, "")]
        assert asked == ["200", "401"]
        failed = sh("podman", "exec", container.name, "python3", "-c", OUTBOUND, check=False)
        assert failed.returncode != 0 and ("unreachable" in failed.stderr or "resolution" in failed.stderr)


def test_it_refuses_to_start_without_credentials(image: str) -> None:
    done = sh(*PODMAN, "run", "--rm", *LIMITS, image, timeout=120, check=False)
    assert done.returncode != 0
    assert "refusing to serve on 0.0.0.0 without an API key" in done.stdout + done.stderr


def test_the_single_profile_of_compose_runs_the_image(image: str, tmp_path: Path) -> None:
    """docker/compose.yaml's `single` profile under podman-compose (the dev extra): the packaged image, its login, its
    volume. The `scaled` profile's images (llama.cpp's server, chroma's) cannot be pulled here: tests/test_compose.py
    reads its wiring instead."""
    from runtime_fixtures import free_port

    shutil.copy(ROOT / "docker" / "compose.yaml", tmp_path / "compose.yaml")
    (tmp_path / "kit.env").write_text(f"KIT_API_KEY={KEY}\nKIT_UI_USER={USER}\nKIT_UI_PASSWORD={PASSWORD}\n")
    port, project = free_port(), "kitcomposetest"
    compose = [str(Path(sys.executable).with_name("podman-compose")), "--podman-args=--runtime runc",
               f"--podman-run-args={' '.join(LIMITS)}", "-p", project, "--profile", "single"]  # fmt: skip
    env = {**os.environ, "KIT_IMAGE": image, "KIT_PORT": str(port)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    up = run("up", "-d")
    try:
        assert up.returncode == 0, f"{up.stdout[-2000:]}\n{up.stderr[-2000:]}"
        url = f"http://127.0.0.1:{port}"
        report("compose up to / answering", f"{wait_ready(f'{project}_assistant_1', f'{url}/'):.1f} s")
        assert chat(url, None).status_code == 401
        assert chat(url, KEY).status_code == 200
        volumes = sh("podman", "volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert f"{project}_kit-data" in volumes
    finally:
        run("down", "-v")
