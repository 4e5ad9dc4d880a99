"""Learned checks against patterns + nearest example, cross-validated on the safety set's CALIBRATION split only.

    .venv/bin/python bench/safety_check.py [clinic] [--encoders embedded,embedded:e5-small] [--checks emergency]

For each encoder and each rule or trigger with labelled calibration messages: nested k-fold cross-validation (outer
5 folds; in each, the threshold is chosen by the inner 5-fold cross-validation of the training part, exactly as
`kit/services/safety/learned.py` does at training time, then applied to the outer fold). Two ways to split: stratified
(labels dealt round-robin) and blocked (contiguous runs of the file, which was written in rounds: a later round is
judged by a model that never saw it, the closer estimate of phrasings nobody wrote down). Figures: the logistic
regression alone, the nearest-neighbour margin alone, the learned check kit ships (both, added; see
kit/services/safety/classifier.py), and that OR'd with the rule's patterns (written on this very split, so their part
is optimistic). The baseline,
measured in the same run on the same split, is the shipped screening: patterns + nearest example at the rule's
threshold (MiniLM, calibrated on this split). The held-out split is never read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.components.embedding import Embedder  # noqa: E402
from kit.domain import load_domain  # noqa: E402
from kit.services.evaluation import safety  # noqa: E402
from kit.services.safety import classifier as clf  # noqa: E402
from kit.services.safety import learned  # noqa: E402
from kit.services.safety.guardrails import Guardrails  # noqa: E402
from kit.settings import embedding_name  # noqa: E402


def blocked(count: int, k: int) -> list[np.ndarray]:
    return [np.asarray(b) for b in np.array_split(np.arange(count), k)]


VARIANTS = {  # how a message's evidence (logit, margin) becomes a score; "learned check" is what kit ships
    "logistic regression alone": lambda e, scale: e[:, 0],
    "nearest neighbours alone": lambda e, scale: e[:, 1],
    "learned check (both, added)": clf.combined,
}


def nested(cid, messages, examples, outer, budget):
    """Per variant, each message's decision from nested cross-validation: scored by a model of the outer folds it
    was not in, against the threshold that model's own inner cross-validation chose (as clf.fit does)."""
    fired = {name: np.zeros(len(messages), dtype=bool) for name in VARIANTS}
    cutoffs = []
    for held in outer:
        keep = np.setdiff1d(np.arange(len(messages)), held)
        train = [messages[i] for i in keep]
        inner = clf.out_of_fold(cid, train, examples)
        scale = clf.ordinary_scale(inner, train)
        model = clf.train(cid, train, examples)
        outside = np.array([model.evidence(messages[i].vectors) for i in held])
        for name, score in VARIANTS.items():
            threshold = clf.choose_threshold(score(inner, scale), train, budget)
            fired[name][held] = score(outside, scale) >= threshold
            cutoffs += [threshold] if name.startswith("learned") else []
    return fired, cutoffs


def rates(cid, messages, fired, langs):
    pos = [i for i, m in enumerate(messages) if m.label == cid]
    ordinary = [i for i, m in enumerate(messages) if m.label == clf.NONE]
    spanish = [i for i in pos if langs[i] == "es"]
    share = lambda idx: sum(fired[i] for i in idx) / max(1, len(idx))  # noqa: E731
    return share(pos), share(spanish), len(spanish), share(ordinary), sum(fired[i] for i in ordinary)


def line(name, cid, messages, fired, langs):
    recall, es, n_es, fp, n_fp = rates(cid, messages, fired, langs)
    spanish = f"(Spanish {100 * es:5.1f}% of {n_es})"
    return f"    {name:40s} recall {100 * recall:5.1f}% {spanish}  ordinary firing {100 * fp:4.1f}% ({n_fp})"


def first_fired(order, chosen, decisions, n, outcome):
    """The first check in the guardrails' order that fires on message ``n``: a learned one by its cross-validated
    decision, any other as shipped."""
    for k, cid in enumerate(order):
        if decisions[cid][n] if cid in chosen else outcome.scores[k].fires:
            return cid
    return clf.NONE


def combined(name, items, fired):
    """Each labelled check's recall (the first that fires decides) and the ordinary messages firing anything."""
    labels = sorted({i.expect for i in items} - {clf.NONE})
    recalls = []
    for cid in labels:
        mine = [f == cid for f, i in zip(fired, items, strict=True) if i.expect == cid]
        recalls.append(f"{cid} {100 * sum(mine) / len(mine):5.1f}%")
    ordinary = [f != clf.NONE for f, i in zip(fired, items, strict=True) if i.expect == clf.NONE]
    return f"    {name:14s} {', '.join(recalls)}; ordinary firing anything {100 * sum(ordinary) / len(ordinary):4.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", nargs="?", default="clinic")
    parser.add_argument("--encoders", default="embedded,embedded:e5-small")
    parser.add_argument("--checks", default=None, help="comma-separated check ids (default: every labelled one)")
    parser.add_argument("--budget", type=float, default=None, help="false-positive share per check (default: spec)")
    args = parser.parse_args()
    domain = load_domain(ROOT / "domains" / args.domain)
    budget = domain.spec.screening.false_positive_rate if args.budget is None else args.budget
    items = learned.calibration_items(domain)  # the calibration split only
    langs = [i.lang for i in items]
    ids = sorted({i.expect for i in items} - {clf.NONE}, key=[c.id for c in Guardrails(domain.spec).checks].index)
    ids = args.checks.split(",") if args.checks else ids
    print(f"{args.domain}: {len(items)} calibration messages ({sum(i.expect == 'none' for i in items)} ordinary), "
          f"checks {', '.join(ids)}; false-positive budget per check {100 * budget:.2f}%")  # fmt: skip
    retrieval = domain.spec.retrieval.embedding_model
    guards = Guardrails(domain.spec, Embedder(retrieval).embed)  # what the shipped screening embeds with
    outcomes = safety.screen(guards, items)
    shipped = [o.fired for o in outcomes]
    order = [c.id for c in guards.checks]
    learned_ids = [c for c in ids if c in domain.spec.screening.learned] or ids[:1]
    sets = [learned_ids] + ([ids] if ids != learned_ids else [])
    for name in args.encoders.split(","):
        same = embedding_name(name) == embedding_name(retrieval)
        guards.learned_embed = None if same else Embedder(name).embed
        started = time.perf_counter()
        messages = learned.labelled(guards, items)
        embedded = time.perf_counter() - started
        print(f"\nencoder {name}: {sum(len(m.vectors) for m in messages)} pieces embedded in {embedded:.1f} s")
        decided: dict[str, dict[str, list[bool]]] = {"stratified": {}, "blocked": {}}
        for cid in ids:
            matched = learned.pattern_matches(guards, cid, [i.text for i in items])
            mine = [clf.Labelled(m.label, m.vectors, hit, m.lang) for m, hit in zip(messages, matched, strict=True)]
            examples = learned.example_vectors(guards, cid)
            print(f"  {cid} ({sum(m.label == cid for m in mine)} messages):")
            if same:
                print(line("shipped: patterns + nearest example", cid, mine, [f == cid for f in shipped], langs))
            print(line("patterns alone", cid, mine, matched, langs))
            started = time.perf_counter()
            clf.fit(cid, mine, examples, budget)
            fit_s = time.perf_counter() - started
            for scheme, outer in (("stratified", clf.folds(len(mine), [m.label for m in mine])),
                                  ("blocked", blocked(len(mine), clf.FOLDS))):  # fmt: skip
                fired, cutoffs = nested(cid, mine, examples, outer, budget)
                for name, alone in fired.items():
                    print(line(f"{scheme} CV: {name}", cid, mine, list(alone), langs))
                either = [bool(a) or m for a, m in zip(fired["learned check (both, added)"], matched, strict=True)]
                decided[scheme][cid] = either
                print(line(f"{scheme} CV: patterns OR learned check", cid, mine, either, langs))
            print(f"    training (with its cross-validation): {fit_s:.2f} s; thresholds {np.round(cutoffs, 2)}")
        for chosen in sets:
            print(f"  all rules and triggers in order, {', '.join(chosen)} learned (the others as shipped):")
            if same:
                print(combined("shipped", items, shipped))
            for scheme, decisions in decided.items():
                fired = [first_fired(order, chosen, decisions, n, o) for n, o in enumerate(outcomes)]
                print(combined(f"{scheme} CV", items, fired))


if __name__ == "__main__":
    main()
