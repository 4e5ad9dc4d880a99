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
# A short negated list ("no cramps or bleeding", "sin fiebre o tos"): the negation heads its first item and each item
# is a few words.
_LIST_ITEM = 3
_LIST_HEAD = re.compile(rf"\s*((?:no|not|without|never|sin|nunca)\s+)(?:[\w'’-]+\s*){{1,{_LIST_ITEM}}}$", re.IGNORECASE)

# A time in the past, in the clause of a pattern's match, makes the match history rather than an emergency: months
# or years ago, a past month, season or year, "last time", childhood, a condition kept under control by medicine.
# Not hours, days or "last night": an emergency can have started then. "since last week" and "for the last month"
# say it is still going on, so they are no past.
_PAST = re.compile(
    r"(?<!since )(?<!for the )(?<!over the )(?<!in the )(?<!past )\blast (?:week|month|year|summer|winter|spring|fall"
    r"|autumn|time)\b"
    r"|\b(?:\d+|an?|one|two|three|four|five|six|several|many|a few|a couple of) (?:months?|years?) ago\b"
    r"|\byears ago\b|\b(?:in|en|del|de) (?:19|20)\d\d\b"
    r"|\bas an? (?:baby|infant|newborn|kid|child|toddler|teen|teenager)\b"
    r"|\bwhen (?:i|he|she|we|they) (?:was|were) (?:little|young|small|a baby|a kid|a child|a teen)\b"
    r"|\bwell[- ](?:controlled|managed)\b|\b(?:controlled|managed) (?:with|by|on)\b"
    r"|\b(?:a )?long (?:time )?ago\b|\bback (?:in|then|when)\b|\bhace (?:tiempo|mucho)\b"
    r"|\bin (?:\d+(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth) grade\b"
    r"|\bin (?:elementary|middle|grade|primary) school\b|\bpassed away\b"
    r"|\b(?:in case|just in case|por si)\b"
    r"|\b(?:el|del) (?:mes|ano|año|verano|invierno|otono|otoño) pasado\b|\bla (?:vez|primavera) pasada\b"
    r"|\bhace (?:(?:\d+|un|una|unos|unas|varios|varias|dos|tres|cuatro|muchos|muchas) )?"
    r"(?:mes|meses|ano|anos|año|años)\b"
    r"|\ben recuperaci(?:on|ón)\b|\b(?:muri[oó]|falleci[oó]) (?:de|por)\b"
    r"|\bin (?:treatment|rehab|recovery|a program|the program)\b|\brehabilitaci(?:on|ón)\b"
    r"|\b(?:de|cuando (?:era|estaba)) (?:bebe|bebé|nino|nina|niño|niña|chiquito|chiquita|reci[eé]n nacid[oa])\b"
    r"|\b(?:controlados?|controladas?) con\b"
    r"|\bdied (?:of|from)\b|\b(?:attack|stroke|seizure)s? at (?:age )?\d\d\b"
    r"|\b(?:saved (?:my|his|her|their) life|survived|survivor|recover(?:ed|ing) from|in recovery)\b"
    r"|\b(?:sobrevivi[oó]|sobreviviente|se recuper[oó] de)\b"
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
    r"|\b(?:heart ?attack|stroke) (?:risk|screening)\b"
    r"|\b(?:will|'ll|ll|gonna|going to) (?:have|get|give (?:me|him|her|you)) a (?:heart ?attack|stroke)\b"
    r"|\bhow (?:do (?:you|i)|to) spell (?:\w+ ){0,2}\w+|\bthe word \w+"
    r"|\b(?:class|classes|course|training|workshop|poster|pamphlet|video|project|report|essay|presentation)"
    r" (?:on|about|for|in) (?:\w+ ){0,2}\w+|\b\w+ (?:action|care|safety|emergency) plan\b"
    r"|\b(?:almost|nearly) \w+(?: \w+){0,3} when (?:i|he|she|we|they) (?:saw|heard|got|read)\b"
    r"|\bcollapsed (?:into|onto|on|in) (?:my |the )?(?:bed|couch|sofa|chair)\b"
    r"|\b(?:medicines?|medications?|meds|pills|medicinas?|medicamentos?|pastillas) (?:for|para|de)"
    r" (?:(?:the|my|his|her|their|las|los|la|el|sus|mis|su) )?\w+"
    r"|\b(?:support groups?|grupos? de apoyo)\b.{0,60}"
    r"|\b(?:novel|story|book|movie|film|script|play|game)s? (?:where|in which|about|with|that has)(?: \w+){0,6} \w+"
    r"|\b(?:test|tests|testing|tested|screen|screening|screened|check|checked) (?:for|de|para) (?:\w+ ){0,2}\w+"
    r"|\b(?:faint\w*|pass(?:es|ed)? out|se desmaya\w*)\b.{0,30}\b(?:needles?|shots?|blood draws?|sight of blood"
    r"|sacan sangre|vacunas?|vaccines?|inyecci\w+)\b",
    re.IGNORECASE,
)
_AND = re.compile(r"\s*\b(?:and|y)\b", re.IGNORECASE)
# Words right after a match that make the match name a thing ("a seizure disorder", "my chest pain visit", "the
# suicide and crisis line", "an overdose awareness poster"): the match is no event.
_MODIFIER = re.compile(
    r"\s+(?:(?:and|&) crisis )?(?:prevention )?(?:(?:hot|help|life)?line|disorders?|visit|follow-?up|survivors?"
    r"|awareness|prevention|training|class|course|poster|kit|specialist|ward|unit|scare)\b",
    re.IGNORECASE,
)
# Anything in the message that says it is happening now (again) keeps every match said, whatever the past beside it.
_NOW = re.compile(
    r"(?<!fine )(?<!better )(?<!okay )(?<!ok )(?<!good )(?<!normal )(?<!home )(?<!treatment )(?<!rehab )"
    r"(?<!managed )(?<!controlled )(?<!stable )"
    r"\b(?:right )?now\b"
    r"|\bagain\b|\bstill\b|\btoday\b"
    r"|\btonight\b|\bthis (?:morning|afternoon|evening)\b|\bcurrently\b"
    r"|\b(?:it|it'?s|it is|they'?re|the pain is) back\b|\b(?:came|coming|come) back\b|\breturned\b|\bworse\b"
    r"|\bahora\b|\bahorita\b|\botra vez\b|\bde nuevo\b"
    r"|\b(?:todavia|todavía)\b|\bhoy\b|\besta (?:(?:manana|mañana)|tarde|noche)\b",
    re.IGNORECASE,
)

_WEAK_NOW = frozenset({"now", "still", "ahora", "todavia", "todavía"})  # say "now" only in the match's clause
_REQUEST = re.compile(r"(?:can|could|may|do|does|is|are|when|should|would|what|where|how)\b")  # a clause that asks
# "now I want ...", "ahora necesita ...", "now he's 5", "now my employer wants ..."
_WISH = re.compile(
    r" (?:(?:i|we) (?:want|need|would|'d|am looking|have to)|(?:necesit|quier|busc)\w*"
    r"|(?:he|she|he's|she's|is|tiene) \d+|(?:estoy|esta|está) bien"
    r"|(?:my|the|his|her|our) \w+ (?:wants|needs|asks|requires))\b",
    re.IGNORECASE,
)


def affirmed(pattern: re.Pattern[str], text: str) -> bool:
    """Whether ``pattern`` matches ``text`` somewhere that is neither denied nor placed in the past; a denied match
    does not hide one starting inside it ("fiebre de 40 ... y no despierta")."""
    at = 0
    while (match := pattern.search(text, at)) is not None:
        if not denied(text, match):
            return True
        at = match.start() + 1
    return False


def denied(text: str, match: re.Match[str]) -> bool:
    """Whether a negation denies ``match`` (``denier``), its clause places it in the past, or it is part of a figure
    of speech ("nearly had a heart attack when I saw the bill")."""
    return denier(text, match) is not None or past(text, match) or figure(text, match) is not None


def denier(text: str, match: re.Match[str]) -> tuple[int, int] | None:
    """The span of the negation that denies ``match``, if any: one before it in its clause ("no chest pain"), at the
    head of a list joined by "or" ("no cramps or bleeding", "no fever, rash or cough"), or inside the match before
    its last word when the pattern matches without it ("mi bebe no tiene fiebre"), unlike a negation the pattern
    holds ("the baby hasn't moved")."""
    if (span := _negation_before(text, match.start())) is not None:
        return span
    last = re.search(r"[\w'’-]+$", match.group())
    if last is None or last.start() == 0:
        return None
    span = _negation_before(text, match.start() + last.start())
    if span is None or span[0] <= match.start():
        return None
    without = text[: span[0]] + text[span[1] :]
    return span if match.re.fullmatch(without, match.start(), match.end() - (span[1] - span[0])) else None


def _negation_before(text: str, at: int) -> tuple[int, int] | None:
    """The negation that denies what starts at ``at``: at the end of its clause, or heading a short list whose items
    are joined by "or" (and commas before it)."""
    before = text[:at]
    seps = list(_CLAUSE.finditer(before))
    start = seps[-1].end() if seps else 0
    if (negation := _NEGATION.search(before, start)) is not None:
        return negation.span()
    end = at
    for i in range(len(seps) - 1, -1, -1):
        joins = ("or", "o", "nor") if end == at else ("or", "o", "nor", ",")
        if len(before[seps[i].end() : end].split()) > _LIST_ITEM or seps[i].group().lower() not in joins:
            return None
        if (head := _LIST_HEAD.match(before, seps[i - 1].end() if i > 0 else 0, seps[i].start())) is not None:
            return head.span(1)
        end = seps[i].start()
    return None


def figure(text: str, match: re.Match[str]) -> tuple[int, int] | None:
    """The span of the figure of speech or name ``match`` lies inside ("drowning in paperwork", "an overdose
    awareness poster"), if any."""
    inside = (f.span() for f in _FIGURE.finditer(text) if f.start() <= match.start() and match.end() <= f.end())
    if (span := next(inside, None)) is not None:
        return span
    modifier = _MODIFIER.match(text, match.end())
    return (match.start(), modifier.end()) if modifier is not None else None


def past(text: str, match: re.Match[str]) -> bool:
    """Whether the clause of ``match``, with the clauses "and" joins to it, places it in the past and nothing says
    it is happening now (a plain "now" only in the match's own clause)."""
    start, end = _clause(text, match)
    joined = end
    while (more := _AND.match(text, joined)) is not None:  # "overdosed and passed away", "... and is home now"
        after = _CLAUSE.search(text, more.end())
        joined = after.start() if after else len(text)
    return bool(_PAST.search(text[start:joined])) and not now(text, (start, end))


def now(text: str, clause: tuple[int, int] | None = None) -> bool:
    """Whether ``text`` says something is happening now: a word of ``_NOW`` anywhere ("again", "right now", "it's
    back"), but a plain "now", "still" or "ahora" only within ``clause`` (the match's, when given; "overdosed years
    ago and now I raise our kids" is history) and not when it times a request ("can I get the shot now", "now I want
    a detector", "is he still taking patients")."""
    for m in _NOW.finditer(text):
        if m.group().lower() in _WEAK_NOW:
            if clause is not None and not clause[0] <= m.start() < clause[1]:
                continue
            before = _CLAUSE.split(text[: m.start()])[-1].strip().lower()
            if _REQUEST.match(before) or _WISH.match(text, m.end()):
                continue
        return True
    return False


def denied_span(text: str, match: re.Match[str]) -> tuple[int, int]:
    """What is not said of ``match``: the figure of speech it is part of, from the negation that denies it to the
    end of its clause, or the whole clause that places it in the past."""
    if (span := figure(text, match)) is not None:
        return span
    if (negation := denier(text, match)) is None:
        return _clause(text, match)
    after = _CLAUSE.search(text, match.end())
    return negation[0], after.start() if after else len(text)


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
