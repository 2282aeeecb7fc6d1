"""A cheap guess of a document's language from its most common function words.

Counts frequent stop words of a handful of languages in a sample of the text and returns the ISO
639-1 code of a clear winner, or None when the sample is too short or no language stands out.
It costs well under a millisecond per document, which is all the precision a metadata field
needs.
"""

from __future__ import annotations

import re
from collections import Counter

_STOPWORDS = {
    "en": "the and of to in is that for it with as was on are be this by not or have from",
    "de": "der die und das ist nicht mit den von zu ein eine sich auch auf für dem des im",
    "fr": "le la les et des est un une du que pour dans qui pas sur au avec ce sont par",
    "es": "el la los las de que y en un una es por con para del se no al lo como",
    "it": "il di che la per un una non sono con del della le gli è da si nel anche come",
    "nl": "de het een van en is dat niet op te met zijn voor die er aan ook als bij",
    "pt": "o os de que e do da em um uma para com não no na por mais dos das se",
}
_LANGUAGE_OF: dict[str, list[str]] = {}
for _code, _words in _STOPWORDS.items():
    for _word in _words.split():
        _LANGUAGE_OF.setdefault(_word, []).append(_code)

_WORD = re.compile(r"[^\W\d_]+")
_SAMPLE_CHARS = 20_000
_MIN_HITS = 8


def guess_language(text: str) -> str | None:
    """ISO 639-1 code (``"en"``, ``"de"``, ...) of ``text``'s language, or None if unsure."""
    # Words found and lower-cased in C: a Python step per word cost ~1 ms per 5 KB document.
    counts = Counter(map(str.lower, _WORD.findall(text[:_SAMPLE_CHARS])))
    votes: Counter[str] = Counter()
    for word, codes in _LANGUAGE_OF.items():
        for code in codes if word in counts else ():
            votes[code] += counts[word]
    ranked = votes.most_common(2)
    if not ranked or ranked[0][1] < _MIN_HITS:
        return None
    if len(ranked) > 1 and ranked[1][1] * 1.5 > ranked[0][1]:
        return None
    return ranked[0][0]
