"""Text measurements the IFEval checkers share: words, sentences, capital words, language.

IFEval's reference counts sentences with nltk's pretrained English punkt
model, whose data is fetched from a hub at run time and so can't be had
here (no pip package ships it). We use instead the rule-based splitter that
the same reference library ships for its key-sentence check
(``instructions_util.split_into_sentences``), re-implemented below with one
change: pieces with no letter or digit (the second "!" of "Hi!!") are not
sentences, which is what punkt does too.

Words are ``\\w+`` runs (the reference's ``RegexpTokenizer(r"\\w+")``);
capital words use nltk's Treebank word tokenizer, which needs no data, so
"WELL-KNOWN" is one word as in the reference.
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache

_WORD_RE = re.compile(r"\w+")


def count_words(text: str) -> int:
    return sum(1 for _ in _WORD_RE.finditer(text))


# Sentinels standing for "a period that does not end a sentence" and "a
# sentence ends here"; any already in the text are removed first.
_PRD = "\x00"
_STOP = "\x01"

_LETTER = "([A-Za-z])"
_TITLES = re.compile(r"(Mr|St|Mrs|Ms|Dr)[.]")
_SITES = re.compile(r"[.](com|net|org|io|gov|edu|me)")
_DECIMAL = re.compile(r"([0-9])[.]([0-9])")
_ELLIPSIS = re.compile(r"\.{2,}")
_INITIAL = re.compile(r"\s" + _LETTER + r"[.] ")
_STARTERS = r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s|This\s|Wherever)"
_ACRONYM_THEN_STARTER = re.compile(r"([A-Z][.][A-Z][.](?:[A-Z][.])?) " + _STARTERS)
_ACRONYM3 = re.compile(_LETTER + "[.]" + _LETTER + "[.]" + _LETTER + "[.]")
_ACRONYM2 = re.compile(_LETTER + "[.]" + _LETTER + "[.]")
_SUFFIX_THEN_STARTER = re.compile(r" (Inc|Ltd|Jr|Sr|Co)[.] " + _STARTERS)
_SUFFIX = re.compile(r" (Inc|Ltd|Jr|Sr|Co)[.]")
_SPACED_LETTER = re.compile(r" " + _LETTER + r"[.]")
_HAS_CONTENT = re.compile(r"\w")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` by the reference's abbreviation-aware rules."""
    text = " " + text.replace(_PRD, "").replace(_STOP, "") + "  "
    text = text.replace("\n", " ")
    text = _TITLES.sub(r"\1" + _PRD, text)
    text = _SITES.sub(_PRD + r"\1", text)
    text = _DECIMAL.sub(r"\1" + _PRD + r"\2", text)
    text = _ELLIPSIS.sub(lambda m: _PRD * len(m.group(0)) + _STOP, text)
    text = text.replace("Ph.D.", "Ph" + _PRD + "D" + _PRD)
    text = _INITIAL.sub(" " + r"\1" + _PRD + " ", text)
    text = _ACRONYM_THEN_STARTER.sub(r"\1" + _STOP + r" \2", text)
    text = _ACRONYM3.sub(r"\1" + _PRD + r"\2" + _PRD + r"\3" + _PRD, text)
    text = _ACRONYM2.sub(r"\1" + _PRD + r"\2" + _PRD, text)
    text = _SUFFIX_THEN_STARTER.sub(r" \1" + _STOP + r" \2", text)
    text = _SUFFIX.sub(r" \1" + _PRD, text)
    text = _SPACED_LETTER.sub(r" \1" + _PRD, text)
    # Closing quotes belong to the sentence they end.
    for mark in ".!?":
        text = text.replace(mark + "\u201d", "\u201d" + mark).replace(mark + '"', '"' + mark)
    for mark in ".!?":
        text = text.replace(mark, mark + _STOP)
    text = text.replace(_PRD, ".")
    pieces = (p.strip() for p in text.split(_STOP))
    return [p for p in pieces if _HAS_CONTENT.search(p)]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


@lru_cache(maxsize=1)
def _word_tokenizer():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokens(text: str) -> list[str]:
    """nltk's ``word_tokenize`` without its punkt sentence pass (whose only
    effect is splitting sentence-final periods off words, which changes no
    word's case)."""
    return _word_tokenizer().tokenize(text)


# langdetect is randomised; a fixed seed makes a verdict reproducible.
_lang_lock = threading.Lock()
_lang_ready = False


def detect_language(text: str) -> str | None:
    """langdetect's language code for ``text``; ``None`` when it finds no
    features to judge by (the reference then counts the check as followed)."""
    global _lang_ready
    import langdetect
    from langdetect import DetectorFactory
    from langdetect.lang_detect_exception import LangDetectException

    if not _lang_ready:
        with _lang_lock:  # profiles load once; concurrent first calls would race
            DetectorFactory.seed = 0
            langdetect.detector_factory.init_factory()
            _lang_ready = True
    try:
        return langdetect.detect(text)
    except LangDetectException:
        return None


# The codes langdetect 1.0.9 can return; a language outside them could never match.
LANGDETECT_CODES = frozenset(
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr "
    "ne nl no pa pl pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh-cn zh-tw".split()
)
