"""How far below the real messages a pattern catches the learned check's veto stands, batch by batch.

    .venv/bin/python bench/veto.py clinic --check emergency

A learned check vetoes a match of its patterns when the message scores below the lowest out-of-fold score of a real
message a pattern caught, less VETO_MARGIN (kit/services/safety/classifier.py). Cross-validation within one set is
the optimistic view of that lowest score; a batch written apart is the nearer estimate of new wordings. So for each
blind calibration batch (ids ``fresh-``, ``fresh2-``, ...) the check is trained without it, and of that batch's
messages the pattern matches are scored: the lowest score of a real one, how many real ones each margin would veto
(lost, unless the check's own threshold still catches them), and how many matches on other messages it vetoes. The
held-out split is never read.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MARGINS = (0.0, 0.5, 1.0)


def main() -> None:
    from kit.components.embedding import Embedder
    from kit.domain import load_domain
    from kit.services.safety import learned
    from kit.services.safety.classifier import VETO_MARGIN
    from kit.services.safety.guardrails import Guardrails

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", help="A template under domains/ (or a domain folder).")
    parser.add_argument("--check", default="emergency", help="The learned check whose veto to measure.")
    args = parser.parse_args()
    domain = load_domain(Path(args.domain) if Path(args.domain).is_dir() else ROOT / "domains" / args.domain)
    guards = Guardrails(domain.spec, Embedder(domain.spec.retrieval.embedding_model).embed)
    guards.learned_embed = learned._encoder(domain)
    known = learned._read_vectors(domain)
    items = learned.calibration_items(domain)
    batches = sorted({m.group() for i in items if (m := re.match(r"fresh\d*-", i.id))}, key=lambda b: (len(b), b))
    print(f"{domain.name}, {args.check}: each blind calibration batch left out of training and scored")
    totals = {m: [0, 0] for m in MARGINS}
    caught_total = others_total = 0
    for batch in batches:
        train = [i for i in items if not i.id.startswith(batch)]
        test = [i for i in items if i.id.startswith(batch)]
        model = learned.train_checks(guards, train, [args.check], domain.spec.screening.false_positive_rate, known)
        check = model[args.check]
        scored = learned.labelled(guards, test, known)
        hits = learned.pattern_matches(guards, args.check, [i.text for i in test])
        rows = zip(test, scored, hits, strict=True)
        matched = [(i.expect == args.check, check.score(m.vectors)) for i, m, h in rows if h]
        real, other = [s for mine, s in matched if mine], [s for mine, s in matched if not mine]
        caught_total, others_total = caught_total + len(real), others_total + len(other)
        parts = []
        for margin in MARGINS:
            veto = check.veto + VETO_MARGIN - margin
            lost, dropped = sum(s < veto for s in real), sum(s < veto for s in other)
            totals[margin][0] += lost
            totals[margin][1] += dropped
            parts.append(f"margin {margin}: veto {veto:.2f}, real vetoed {lost}, others vetoed {dropped}")
        head = f"  {batch} real caught {len(real)} (lowest {min(real):.2f}), others matched {len(other)}; "
        print(head + "; ".join(parts))
    learned._write_vectors(domain, known)
    for margin, (lost, dropped) in totals.items():
        print(f"all batches, margin {margin}: real vetoed {lost}/{caught_total}, others {dropped}/{others_total}")


if __name__ == "__main__":
    main()
