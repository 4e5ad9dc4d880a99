"""What a message says is not happening now: a pattern's match that it denies ("no chest pain", "he doesn't have
trouble breathing", "no tengo dolor de pecho") or places in the past ("had a heart attack in 2019", "my daughter had a
seizure as a baby", "se desmayó el verano pasado") is no evidence, neither for the pattern nor for similarity
(kit/services/safety/guardrails.py)."""

from __future__ import annotations

import re

# A pattern's match right after one of these, in the same clause, is denied rather than said ("no chest pain",
# "he doesn't have trouble breathing", "no tengo dolor de pecho"); a few filler words may stand between. A pattern
# that holds the negation itself ("can't breathe", "not breathing", "no respira") starts with it, so it still fires.
_NEGATION = re.compile(
    r"(?:\b(?:no|not|never|without|denies|denied|nunca|sin|ni)\b|\b(?:don|doesn|didn|haven|hasn|isn|aren|wasn)[’']?t"
    r"(?: (?:have|has|had|having|got|get|feel|feeling))?|\bno (?:tengo|tiene|tuvo|hay|siento|siente))"
    r"(?: (?:any|a|an|the|more|real|other|signs? of|symptoms? of|kind of|having|had|el|la|los|las|un|una|de|mas))*\s*$"
)
_CLAUSE = re.compile(r"[.,;:!?()]|\b(?:but|and|or|just|although|though|pero|y|o|solo|aunque)\b")

# A time in the past, in the clause of a pattern's match, makes the match history rather than an emergency: months
# or years ago, a past month, season or year, "last time", childhood, a condition kept under control by medicine.
# Not hours, days or "last night": an emergency can have started then. "since last week" and "for the last month"
# say it is still going on, so they are no past.
_PAST = re.compile(
    r"(?<!since )(?<!for the )(?<!over the )(?<!in the )(?<!past )\blast (?:week|month|year|summer|winter|spring|fall"
    r"|autumn|time)\b"
    r"|\b(?:\d+|an?|one|two|three|four|five|six|several|many|a few|a couple of) (?:months?|years?) ago\b"
    r"|\byears ago\b|\bin (?:19|20)\d\d\b"
    r"|\bas an? (?:baby|infant|newborn|kid|child|toddler|teen|teenager)\b"
    r"|\bwhen (?:i|he|she|we|they) (?:was|were) (?:little|young|small|a baby|a kid|a child|a teen)\b"
    r"|\bwell[- ]controlled\b|\bcontrolled (?:with|by|on)\b"
    r"|\b(?:el|del) (?:mes|ano|año|verano|invierno|otono|otoño) pasado\b|\bla (?:vez|primavera) pasada\b"
    r"|\bhace (?:(?:\d+|un|una|unos|unas|varios|varias|dos|tres|cuatro|muchos|muchas) )?"
    r"(?:mes|meses|ano|anos|año|años)\b"
    r"|\ben recuperaci(?:on|ón)\b|\b(?:muri[oó]|falleci[oó]) (?:de|por)\b"
    r"|\bin (?:treatment|rehab|recovery|a program|the program)\b|\brehabilitaci(?:on|ón)\b"
    r"|\b(?:de|cuando (?:era|estaba)) (?:bebe|bebé|nino|nina|niño|niña|chiquito|chiquita)\b"
    r"|\b(?:controlados?|controladas?) con\b"
    r"|\bdied (?:of|from)\b|\b(?:attack|stroke|seizure)s? at (?:age )?\d\d\b"
    r"|\b(?:saved (?:my|his|her|their) life|survived|survivor|recover(?:ed|ing) from|in recovery)\b"
    r"|(?<!at )\bonce\b(?! (?:a|every|more|again|in a)\b)|\bone time\b|\buna vez\b"
    r"|\bin (?:college|high school|my (?:twenties|teens|20s))\b|\bruns? in (?:my|our|the|his|her) family\b"
    r"|\bfamily history\b|\b(?:years?|months?) (?:clean|sober)\b|\b(?:clean|sober) (?:for|since)\b"
    r"|\bllevo\b.{0,20}\bsobri[oa]\b|\b(?:is|are|came|got|been|now) (?:back )?home\b"
    r"|\bdischarged\b|\bout of the hospital\b"
    r"|\b(?:er|ed|doctor|doctors|dr \w+|hospital|urgent care) (?:said|told (?:me|us|him|her))\b.{0,40}\bwas\b",
    re.IGNORECASE,
)
# Figures of speech and things named after an emergency, not one: a match inside one is not said.
_FIGURE = re.compile(
    r"\b(?:almost|nearly|about to|practically) (?:had|have|gave me|give me) a heart ?attack\b"
    r"|\b(?:gave|give|giving|gives) (?:me|him|her|us|them|my \w+) a heart ?attack\b"
    r"|\bdrowning in (?:paperwork|work|bills|forms|e-?mails?|homework|debt|laundry|papers)\b"
    r"|\b(?:dying|die) (?:to|for) (?:know|see|get|try|go|meet|hear)\b"
    r"|\b(?:overdose|suicide|stroke|seizure|heart ?attack) (?:awareness|prevention|training|class|course|poster|kit)\b"
    r"|\b(?:heart ?attack|stroke) (?:risk|screening)\b"
    r"|\bhow (?:do (?:you|i)|to) spell (?:\w+ ){0,2}\w+|\bthe word \w+"
    r"|\b(?:class|classes|course|training|workshop|poster|pamphlet|video|project|report|essay|presentation)"
    r" (?:on|about|for|in) (?:\w+ ){0,2}\w+|\b\w+ (?:action|care|safety|emergency) plan\b"
    r"|\b(?:almost|nearly) \w+(?: \w+){0,3} when (?:i|he|she|we|they) (?:saw|heard|got|read)\b"
    r"|\bcollapsed (?:into|onto|on|in) (?:my |the )?(?:bed|couch|sofa|chair)\b"
    r"|\b(?:medicines?|medications?|meds|pills|medicinas?|medicamentos?|pastillas) (?:for|para|de)"
    r" (?:(?:the|my|his|her|their|las|los|la|el|sus|mis|su) )?\w+",
    re.IGNORECASE,
)
# Anything in the message that says it is happening now (again) keeps every match said, whatever the past beside it.
_NOW = re.compile(
    r"(?<!fine )(?<!better )(?<!okay )(?<!ok )(?<!good )(?<!normal )(?<!home )(?<!treatment )(?<!rehab )"
    r"\b(?:right )?now\b"
    r"|\bagain\b|\bstill\b|\btoday\b"
    r"|\btonight\b|\bthis (?:morning|afternoon|evening)\b|\bcurrently\b"
    r"|\b(?:it|it'?s|it is|they'?re|the pain is) back\b|\b(?:came|coming|come) back\b|\breturned\b|\bworse\b"
    r"|\bahora\b|\bahorita\b|\botra vez\b|\bde nuevo\b"
    r"|\b(?:todavia|todavía)\b|\bhoy\b|\besta (?:(?:manana|mañana)|tarde|noche)\b",
    re.IGNORECASE,
)

_REQUEST = re.compile(r"(?:can|could|may|do|does|is|are|when|should|would|what|where|how)\b")  # a clause that asks
# "now I want ...", "ahora necesita ...", "now he's 5", "now my employer wants ..."
_WISH = re.compile(
    r" (?:(?:i|we) (?:want|need|would|'d|am looking|have to)|(?:necesit|quier|busc)\w*"
    r"|(?:he|she|he's|she's|is|tiene) \d+|(?:estoy|esta|está) bien"
    r"|(?:my|the|his|her|our) \w+ (?:wants|needs|asks|requires))\b",
    re.IGNORECASE,
)


def affirmed(pattern: re.Pattern[str], text: str) -> bool:
    """Whether ``pattern`` matches ``text`` somewhere that is neither denied nor placed in the past."""
    return any(not denied(text, m) for m in pattern.finditer(text))


def denied(text: str, match: re.Match[str]) -> bool:
    """Whether a negation stands before ``match`` within its clause, its clause places it in the past, or it is
    part of a figure of speech ("nearly had a heart attack when I saw the bill")."""
    negated = bool(_NEGATION.search(_CLAUSE.split(text[: match.start()])[-1]))
    return negated or past(text, match) or figure(text, match) is not None


def figure(text: str, match: re.Match[str]) -> tuple[int, int] | None:
    """The span of the figure of speech or name ``match`` lies inside ("drowning in paperwork", "an overdose
    awareness poster"), if any."""
    inside = (f.span() for f in _FIGURE.finditer(text) if f.start() <= match.start() and match.end() <= f.end())
    return next(inside, None)


def past(text: str, match: re.Match[str]) -> bool:
    """Whether the clause of ``match`` places it in the past and nothing in ``text`` says it is happening now."""
    start, end = _clause(text, match)
    return bool(_PAST.search(text[start:end])) and not now(text)


def now(text: str) -> bool:
    """Whether ``text`` says something is happening now: a word of ``_NOW``, but not a "now" or "still" that times a
    request ("can I get the shot now", "now I want a detector", "is he still taking patients")."""
    for m in _NOW.finditer(text):
        if m.group().lower() in ("now", "still", "ahora"):
            clause = _CLAUSE.split(text[: m.start()])[-1].strip().lower()
            if _REQUEST.match(clause) or _WISH.match(text, m.end()):
                continue
        return True
    return False


def denied_span(text: str, match: re.Match[str]) -> tuple[int, int]:
    """What is not said of ``match``: the figure of speech it is part of, from the negation that denies it to the
    end of its clause, or the whole clause that places it in the past."""
    before = _CLAUSE.split(text[: match.start()])[-1]
    negation = _NEGATION.search(before)
    if (span := figure(text, match)) is not None:
        return span
    if negation is None:
        return _clause(text, match)
    after = _CLAUSE.search(text, match.end())
    return match.start() - len(before) + negation.start(), after.start() if after else len(text)


def _clause(text: str, match: re.Match[str]) -> tuple[int, int]:
    """From the start of the clause ``match`` starts in to the end of that clause or of the match, whichever is
    later."""
    start = match.start() - len(_CLAUSE.split(text[: match.start()])[-1])
    after = _CLAUSE.search(text, match.start())
    return start, max(match.end(), after.start() if after else len(text))


def pattern_words(source: str) -> set[str]:
    """The plain words (four letters or more) a regular expression spells out, its escapes (``\\b``) left aside."""
    return set(re.findall(r"[a-z]{4,}", re.sub(r"\\[a-zA-Z]", " ", source.lower())))


# Words these readings depend on: never respelled towards an example's word (kit/services/safety/guardrails.py).
READING_WORDS = frozenset().union(*(pattern_words(r.pattern) for r in (_NEGATION, _CLAUSE, _PAST, _FIGURE, _NOW)))
