"""The learned checks of a domain (``screening.learned`` in domain.yaml): trained from its safety set's calibration
split and the checks' examples (kit/services/safety/classifier.py), cached in the build folder and trained again when
the embedding model or the training lines change, at `kit index`, `kit serve` start (and chat, ask) and `kit eval`.

The cache is ``build/screening.npz`` with a stamp: the encoder's name and a sha256 over everything the
classifiers depend on (the calibration lines, the checks' examples and patterns, the screening settings). The
pieces' vectors are kept per encoder in the model cache (``$KIT_CACHE/screening-vectors/``), for every domain, and
the trained classifiers by stamp there too (``$KIT_CACHE/screening-trained/``), for every copy of a domain.
A domain with no learned checks, or whose safety set has no calibration messages for one, screens as before.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.domain import Domain
from kit.files import replace_with
from kit.records import SafetyItem
from kit.services.safety.classifier import NONE, Classifier, Labelled, fit
from kit.services.safety.guardrails import Embed, Guardrails, fold
from kit.services.safety.negation import affirmed
from kit.settings import embedding_name

logger = logging.getLogger(__name__)

CACHE = "screening.npz"
VECTORS = "screening-vectors"  # in the model cache: the training pieces' vectors per encoder, embedded once
TRAINED = "screening-trained"  # in the model cache: trained classifiers by stamp, for every copy of a domain
VERSION = 4  # bump when training changes, so caches trained the old way are trained again


@dataclass(frozen=True)
class Trained:
    """The classifiers of a domain, by check id, and how long training took (0 when read from the cache)."""

    classifiers: dict[str, Classifier]
    seconds: float = 0.0


def screening(domain: Domain, embed: Embed) -> Guardrails:
    """The domain's guardrails with its learned checks (trained, or read from the cache), ``embed`` being the
    retrieval embedder; the learned checks' own encoder (screening.encoder) is loaded when it is another."""
    guards = Guardrails(domain.spec, embed)
    if domain.spec.screening.learned:
        guards.learned_embed = _encoder(domain)
        guards.learn(learned(domain, guards).classifiers, guards.learned_embed)
    return guards


def refresh(domain: Domain) -> Trained:
    """The learned checks trained again if their cache is stale (`kit index` calls it); nothing when there are none."""
    from kit.components.embedding import Embedder

    if not domain.spec.screening.learned:
        return Trained({})
    guards = Guardrails(domain.spec, Embedder(domain.spec.retrieval.embedding_model).embed)
    guards.learned_embed = _encoder(domain)
    return learned(domain, guards)


def encoder_name(domain: Domain) -> str:
    """The embedding model the learned checks read."""
    return embedding_name(domain.spec.screening.encoder or domain.spec.retrieval.embedding_model)


def _encoder(domain: Domain) -> Embed | None:
    """The learned checks' encoder when it is not the retrieval embedder, else None (they share its vectors)."""
    from kit.components.embedding import Embedder

    name = encoder_name(domain)
    return None if name == embedding_name(domain.spec.retrieval.embedding_model) else Embedder(name).embed


def learned(domain: Domain, guards: Guardrails) -> Trained:
    """The domain's classifiers: from the cache when its stamp matches, else trained now and cached."""
    ids = domain.spec.screening.learned
    if not ids:
        return Trained({})
    items = calibration_items(domain)
    stamp = _stamp(domain, items)
    cached = _read(domain, stamp)
    if cached is not None:
        return Trained(cached)
    started = time.perf_counter()
    known = _read_vectors(domain)
    classifiers = train_checks(guards, items, ids, domain.spec.screening.false_positive_rate, known)
    _write(domain, stamp, classifiers)
    _write_vectors(domain, known)
    seconds = time.perf_counter() - started
    logger.info("trained the learned checks %s in %.1f s", ", ".join(classifiers), seconds)
    return Trained(classifiers, seconds)


def calibration_items(domain: Domain) -> list[SafetyItem]:
    """The safety set's calibration split, and that of the sets in ``screening.learn_from`` (the held-out split is
    never trained on), less any message that is a question or turn of the answer eval's held-out set (eval.heldout,
    which must stay untrained on by every part of the assistant); none without a safety set."""
    from kit.services.evaluation.runner import load_items
    from kit.services.evaluation.safety import load_safety

    if domain.spec.eval.safety is None:
        return []
    cases = load_items(domain, split="heldout")
    held = {fold(c.item.question) for c in cases} | {
        fold(m.content) for c in cases for m in c.item.history if m.role == "user"
    }
    ids = {*domain.spec.screening.learned}
    borrowed = [
        i if i.expect in ids else i.model_copy(update={"expect": NONE})  # another domain's rule: ordinary here
        for rel in domain.spec.screening.learn_from
        for i in load_safety(domain, rel)
    ]
    return [i for i in [*load_safety(domain), *borrowed] if i.split == "calibration" and fold(i.text) not in held]


def labelled(
    guards: Guardrails, items: Sequence[SafetyItem], known: dict[str, np.ndarray] | None = None
) -> list[Labelled]:
    """Each message's label and its pieces' vectors under the learned checks' encoder, the pieces not in ``known``
    (text to vector, updated) embedded in one batched call."""
    known = {} if known is None else known
    split = [guards.pieces(item.text) for item in items]
    todo = sorted({p for ps in split for p in ps} - known.keys())
    if todo:
        known.update(zip(todo, _embed(guards)(todo), strict=True))
    return [
        Labelled(item.expect, np.stack([known[p] for p in ps]), lang=item.lang)
        for item, ps in zip(items, split, strict=True)
    ]


def pattern_matches(guards: Guardrails, check: str, texts: Sequence[str]) -> list[bool]:
    """Whether ``check``'s patterns fire on each text (as written, folded, respelled; denials read)."""
    pattern = next(c for c in guards.checks if c.id == check).pattern
    if pattern is None:
        return [False] * len(texts)
    return [any(affirmed(pattern, t) for t in (text, fold(text), guards.respell(text))) for text in texts]


def train_checks(
    guards: Guardrails,
    items: Sequence[SafetyItem],
    ids: Sequence[str],
    false_positive_rate: float,
    known: dict[str, np.ndarray] | None = None,
) -> dict[str, Classifier]:
    """A classifier per check in ``ids`` that has calibration messages, its threshold from cross-validation
    (``known``: vectors of pieces embedded before, as in ``labelled``)."""
    messages = labelled(guards, items, known)
    out = {}
    for cid in ids:
        if not any(m.label == cid for m in messages):
            logger.warning("%s has no labelled calibration messages: it screens by patterns and examples", cid)
            continue
        matched = pattern_matches(guards, cid, [i.text for i in items])
        mine = [Labelled(m.label, m.vectors, hit, m.lang) for m, hit in zip(messages, matched, strict=True)]
        out[cid] = fit(cid, mine, example_vectors(guards, cid), false_positive_rate)
    return out


def example_vectors(guards: Guardrails, check: str) -> np.ndarray:
    """The check's examples embedded by the learned checks' encoder (no rows when it has none)."""
    examples = next(c for c in guards.checks if c.id == check).examples
    return _embed(guards)(list(examples)) if examples else np.zeros((0, 1), dtype=np.float32)


def _embed(guards: Guardrails) -> Embed:
    embed = guards.learned_embed or guards.embed
    assert embed is not None
    return embed


def _stamp(domain: Domain, items: Sequence[SafetyItem]) -> str:
    spec = domain.spec
    screened = {c.id: c for c in (*spec.rules, *spec.handoff.triggers)}
    content = {
        "version": VERSION,
        "encoder": encoder_name(domain),
        "settings": spec.screening.model_dump(),
        # every check's: the pieces a message is cut into depend on them all (denied clauses, respelled words)
        "checks": {cid: [c.patterns, c.examples] for cid, c in screened.items()},
        "items": [[i.text, i.expect] for i in items],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


FIELDS = ("weights", "bias", "positives", "negatives", "scale", "threshold", "veto")  # a Classifier's, as cached


def _read(domain: Domain, stamp: str) -> dict[str, Classifier] | None:
    """The classifiers trained for ``stamp``: the domain's build folder's, else the model cache's (another copy of
    the same template, same lines and settings, trained them: `kit new retail` trains nothing its template did)."""
    for path in (domain.build_dir / CACHE, _trained_file(stamp)):
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["stamp"]) != stamp:
                    continue
                ids = [str(i) for i in data["ids"]]
                return {cid: _classifier(*(data[f"{n}.{f}"] for f in FIELDS)) for n, cid in enumerate(ids)}
        except (OSError, KeyError, ValueError):
            continue
    return None


def _trained_file(stamp: str) -> Path:
    from kit.components.models import cache_dir

    return cache_dir() / TRAINED / f"{stamp[:32]}.npz"


def _classifier(weights: np.ndarray, bias: np.ndarray, positives: np.ndarray, negatives: np.ndarray,
                scale: np.ndarray, threshold: np.ndarray, veto: np.ndarray) -> Classifier:  # fmt: skip
    return Classifier(weights, float(bias), positives, negatives, scale, float(threshold), float(veto))


def _read_vectors(domain: Domain) -> dict[str, np.ndarray]:
    """The pieces any domain on this machine embedded with the domain's encoder (kept in the model cache): a few
    lines added to the safety set embed only those lines, and a new copy of a template (`kit new clinic`) embeds
    nothing its template did not."""
    try:
        with np.load(_vectors_file(domain), allow_pickle=False) as data:
            if str(data["encoder"]) != encoder_name(domain):
                return {}
            return dict(zip((str(t) for t in data["texts"]), data["vectors"], strict=True))
    except (OSError, KeyError, ValueError):
        return {}


def _write_vectors(domain: Domain, known: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    texts = sorted(known)
    vectors = np.stack([known[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)
    np.savez(buffer, encoder=np.array(encoder_name(domain)), texts=np.array(texts, dtype=str), vectors=vectors)
    replace_with(_vectors_file(domain), lambda tmp: tmp.write_bytes(buffer.getvalue()), cache=True)


def _vectors_file(domain: Domain) -> Path:
    """The model cache's file of pieces embedded by the domain's encoder, shared by every domain on this machine."""
    from kit.components.models import cache_dir

    return cache_dir() / VECTORS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', encoder_name(domain))}.npz"


def _write(domain: Domain, stamp: str, classifiers: dict[str, Classifier]) -> None:
    arrays = {f"{n}.{f}": np.asarray(getattr(c, f)) for n, c in enumerate(classifiers.values()) for f in FIELDS}
    buffer = io.BytesIO()
    np.savez(buffer, stamp=np.array(stamp), ids=np.array(list(classifiers), dtype=str), **arrays)
    # a cache: a build folder that cannot be written (a read-only image) only means training again next start
    for path in (domain.build_dir / CACHE, _trained_file(stamp)):
        replace_with(path, lambda tmp: tmp.write_bytes(buffer.getvalue()), cache=True)
