"""docker/compose.yaml: the `single` and `scaled` profiles wired as docs/SCALE_OUT.md says. No container engine runs
compose here (no Docker; the upstream images cannot be pulled), so this reads the file: services per profile, names
and ports the scaled domain.yaml points at, what mounts the domain, what waits for what."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOC = (ROOT / "docs" / "SCALE_OUT.md").read_text(encoding="utf-8")


def profile(name: str) -> set[str]:
    return {s for s, service in SERVICES.items() if name in service.get("profiles", [])}


def scaled_domain_section() -> dict[str, Any]:
    """The domain.yaml block SCALE_OUT.md gives for compose's scaled profile."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC, re.DOTALL)
    (block,) = [b for b in blocks if "http://model:" in b]
    return yaml.safe_load(block)


def box_ports() -> list[str]:
    return SERVICES["assistant"]["ports"]


def test_every_service_belongs_to_one_profile() -> None:
    assert profile("single") == {"assistant"}
    assert profile("scaled") == {"model", "chroma", "index", "assistant-scaled"}
    assert all(len(s["profiles"]) == 1 for s in SERVICES.values())


def test_the_single_box_is_the_packaged_image_alone() -> None:
    box = SERVICES["assistant"]
    assert box["image"] == "${KIT_IMAGE:-kit-shop:1}" and box["env_file"] == "kit.env"
    assert box["ports"] == ["${KIT_PORT:-7860}:7860"] and box["volumes"] == ["kit-data:/data"]
    assert "depends_on" not in box and box["cap_drop"] == ["ALL"]


def test_the_scaled_domain_points_at_the_services_by_name_and_port() -> None:
    from kit.settings import ModelSettings, Retrieval

    section = scaled_domain_section()
    model = ModelSettings.model_validate(section["model"])
    retrieval = Retrieval.model_validate({"sources": [{"path": "docs"}], **section["retrieval"]})
    assert model.server is not None and retrieval.server is not None
    host, port = re.fullmatch(r"http://(\w+):(\d+)/v1", model.server.base_url).groups()  # type: ignore[union-attr]
    served = SERVICES[host]["command"]
    assert served[served.index("--port") + 1] == port and served[served.index("--alias") + 1] == model.server.model
    assert retrieval.server.host == "chroma" and retrieval.server.port == 8000  # chroma's image listens on 8000


def test_chroma_is_the_server_of_the_client_kit_pins() -> None:
    pinned = re.search(r"^chromadb==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert pinned and SERVICES["chroma"]["image"] == f"${{CHROMA_IMAGE:-chromadb/chroma:{pinned.group(1)}}}"
    assert SERVICES["chroma"]["volumes"] == ["chroma-data:/data"]


def test_the_scaled_assistant_serves_the_mounted_domain_once_it_is_indexed() -> None:
    assistant, index = SERVICES["assistant-scaled"], SERVICES["index"]
    assert assistant["image"] == index["image"] == SERVICES["assistant"]["image"]
    assert "./domain:/opt/kit/domain:ro" in assistant["volumes"] and "./domain:/opt/kit/domain" in index["volumes"]
    assert assistant["depends_on"]["index"] == {"condition": "service_completed_successfully"}
    assert set(assistant["depends_on"]) == {"model", "chroma", "index"} and index["depends_on"] == ["chroma"]
    assert "kit index /opt/kit/domain" in index["entrypoint"][-1]
    assert assistant["ports"] == box_ports() and "kit-data:/data" in assistant["volumes"]
    assert Path(SERVICES["model"]["volumes"][0].split(":")[0]) == Path("./models")
