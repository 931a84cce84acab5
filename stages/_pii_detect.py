"""PII detectors: find e-mail addresses, phone numbers, public IPs, payment cards, IBANs and US SSNs.

One concern: candidate patterns and the validation that turns a candidate into a finding.
Each type is a regular expression for *candidates*, then a check that a look-alike fails:

* ``email``: RFC-ish local part, dotted host, alphabetic TLD; file names such as
  ``logo@2x.png`` are not addresses (image/script extensions are refused as TLDs).
* ``phone``: digit groups with separators. ``+``/``00`` numbers are parsed internationally,
  other numbers in the document's region (URL country TLD, else its language, else
  ``default_region``) and must have its national shape (NANP 3-3-4 groups, the trunk prefix
  ``0`` where the region has one); a number counts only when libphonenumber
  (``phonenumbers``) says it is a valid number. Dates (``2023-10-15``, ``15.10.2023``), ISBNs, version
  strings and bare digit runs (order numbers) are not phone numbers.
* ``ip``: IPv4 dotted quads without leading zeros and IPv6 addresses that parse, and only
  global (public) ones: ``192.168.1.1``, ``127.0.0.1``, ``::1`` are not personal data.
  A quad after ``version``/``v``/``build``... or followed by ``.N`` is a version number.
* ``card``: 13-19 digits, in one group or in groups separated by one kind of separator,
  with a known issuer prefix and length, passing the Luhn check.
* ``iban``: a country code with its IBAN length (ISO 13616 registry) and the mod-97 checksum.
* ``ssn``: ``AAA-GG-SSSS`` under the SSA's rules (area not 000, 666 or 9xx, group not 00,
  serial not 0000, not the advertised Woolworth / sample numbers).

:func:`find_spans` returns non-overlapping ``(start, end, type)`` spans in character
offsets; where candidates of two types overlap the earlier type in :data:`TYPES` wins.
It is a per-document Python function (``re`` + validation), run only on the rows whose
text an RE2 prefilter (:data:`PREFILTER`, vectorised over the batch) says may hold a candidate.
"""
from __future__ import annotations

import functools
import ipaddress
import re

#: PII types, in priority order when candidates overlap
TYPES = ("email", "iban", "card", "ssn", "ip", "phone")

#: cheap RE2 patterns (no look-arounds) a row must match before the Python pass looks for a type
PREFILTER = {
    "email": r"[A-Za-z0-9]@[A-Za-z0-9]",
    "iban": r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}",
    "card": r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}",
    "ssn": r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
    "ip": r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}",
    "phone": r"[0-9][0-9 ()./-]{5,}[0-9]",
}

#: an address is found from each "@": its local part before, its host after
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}$")
_EMAIL_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w-]|\.[A-Za-z0-9])")
_EMAIL_BEFORE = re.compile(r"[\w.%+-]")
_NOT_TLD = frozenset("png jpg jpeg gif svg webp bmp ico css js mjs json xml html htm php pdf zip mp4 mp3".split())

_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
#: IBAN lengths by country (SWIFT IBAN registry)
_IBAN_LEN = dict(
    AD=24, AE=23, AL=28, AT=20, AZ=28, BA=20, BE=16, BG=22, BH=22, BR=29, BY=28, CH=21, CR=22, CY=28, CZ=24,
    DE=22, DK=18, DO=28, EE=20, EG=29, ES=24, FI=18, FO=18, FR=27, GB=22, GE=22, GI=23, GL=18, GR=27, GT=28,
    HR=21, HU=28, IE=22, IL=23, IQ=23, IS=26, IT=27, JO=30, KW=30, KZ=20, LB=28, LC=32, LI=21, LT=20, LU=20,
    LV=21, MC=27, MD=24, ME=22, MK=19, MR=27, MT=31, MU=30, NL=18, NO=15, PK=24, PL=28, PS=29, PT=25, QA=29,
    RO=24, RS=22, SA=24, SC=31, SE=24, SI=19, SK=24, SM=27, ST=25, SV=28, TL=23, TN=24, TR=26, UA=29, VA=22,
    VG=24, XK=20)

# every digit-led pattern starts with a digit and checks what precedes it with a 2-character
# look-behind: Python's ``re`` then scans for the first digit quickly (10x faster than a leading
# look-behind on real pages)
_CARD = re.compile(r"\d(?<![\w.,/-]\d)\d{3}(?:(?:([ -]?)\d{4}){2}(?:\1\d{1,7})?|([ -])\d{6}\2\d{4,5})"
                   r"(?![\w/-]|[.,]\d)")

_SSN = re.compile(r"\d(?<![\w./-]\d)\d\d-\d\d-\d{4}(?![\w/-]|[.,]\d)")
_SSN_ADVERTISED = frozenset({"078051120", "219099999", "123456789"})

_IPV4 = re.compile(r"\d(?<![\w.:-]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w-]|\.\d)")
#: IPv6 candidates are grown around every ":hex:" (a literal ":" is quick to scan for; a pattern
#: starting with a hex digit would try every a-f letter of the text)
_IPV6_SEED = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(r"(?:[0-9A-Fa-f]{1,4}:|:)(?::?[0-9A-Fa-f]{1,4}|:){1,8}(?:%\w+)?(?![\w:]|\.\w)")
_HEXCOLON = frozenset("0123456789abcdefABCDEF:")
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bv|\bver\.?|version|release|build|firmware|update|\brev\.?|revision|driver|patch|\bsdk|\bapi|"
    r"kb|ios|android|windows|chrome|firefox|python|node|java)\s*[:#]?\s*$")

#: with a country code, groups are optional; without one, at least one separator is needed
#: (a bare digit run is never read as a national number), which keeps years and counts out early
_PHONE = re.compile(
    r"(?=[+(\d])(?<![\w+/.,:-])(?:(?:\+|\b00)\d{1,3}[ .-]?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:(?:[ .-]|/ ?)\d{1,8}){0,6}"
    r"|(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:(?:[ .-]|/ ?)\d{1,8}){1,6})"
    r"(?![\w/-]|[.,:]\d)")
_DATE = re.compile(r"^(?:\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|(?:19|20)\d\d ?[-/] ?(?:19|20)\d\d)"
                   r"(?:$|[ T]\d)")  # a date, or a date and a time ("05.12.1972 00 UTC")
_ISBN_BEFORE = re.compile(r"(?i)(?:isbn(?:-1[03])?|issn|doi|arxiv)\s*[:#]?\s*$")
_PHONE_SEP = re.compile(r"[ .()/-]")
#: an international prefix or area code right before a candidate: it is part of a phone number
_PHONE_PREFIX = re.compile(r"(?:\+\d{1,3}|\b00\d{1,3}|\(\d{1,5}\))[ .-]?$")
_DECIMAL = re.compile(r"^\d+[.,]\d+$")
_IPV4_SHAPE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
#: the SSN layout (3-2-4 with dashes) is not how any country writes its national phone numbers
_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")

#: a document's language -> the region its national-format numbers are read in
LANG_REGION = dict(en="US", de="DE", fr="FR", es="ES", it="IT", pt="PT", pl="PL", nl="NL", ru="RU", zh="CN",
                   ja="JP", ko="KR", sv="SE", da="DK", fi="FI", cs="CZ", tr="TR", ar="SA", uk="UA")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_issuer_ok(d: str) -> bool:
    """Issuer prefix (IIN) and length of the major networks."""
    n = len(d)
    p2, p4 = int(d[:2]), int(d[:4])
    if d[0] == "4":
        return n in (13, 16, 19)                      # Visa
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16                                # Mastercard
    if p2 in (34, 37):
        return n == 15                                # American Express
    if d.startswith("6011") or d.startswith("65") or 644 <= int(d[:3]) <= 649:
        return 16 <= n <= 19                          # Discover
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19                          # JCB
    if 300 <= int(d[:3]) <= 305 or p2 in (36, 38, 39):
        return 14 <= n <= 19                          # Diners Club
    if p2 == 62:
        return 16 <= n <= 19                          # UnionPay
    if p2 in (50, 56, 57, 58, 63, 67):
        return 12 <= n <= 19                          # Maestro
    return False


def card_ok(s: str) -> bool:
    d = s.replace(" ", "").replace("-", "")
    return 13 <= len(d) <= 19 and len(set(d)) > 1 and _card_issuer_ok(d) and luhn_ok(d)


def iban_ok(s: str) -> bool:
    s = s.replace(" ", "")
    if _IBAN_LEN.get(s[:2]) != len(s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return (area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"
            and area + group + serial not in _SSN_ADVERTISED)


def _ipv4_ok(m: re.Match, text: str) -> bool:
    parts = m.group(0).split(".")
    if any(len(p) > 1 and p[0] == "0" for p in parts) or any(int(p) > 255 for p in parts):
        return False
    if _VERSION_BEFORE.search(text, max(0, m.start() - 24), m.start()):
        return False
    return ipaddress.IPv4Address(m.group(0)).is_global


def _ipv6_ok(s: str) -> bool:
    if s.count(":") < 2 or s.endswith(":") and not s.endswith("::"):
        return False
    try:
        ip = ipaddress.IPv6Address(s.split("%")[0])
    except ValueError:
        return False
    return ip.is_global and ip.ipv4_mapped is None


@functools.lru_cache(maxsize=1)
def _phonenumbers():
    import phonenumbers  # imported on first use: its metadata loads per region, lazily
    return phonenumbers


_NANP = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}")


@functools.lru_cache(maxsize=256)
def _national_prefix(region: str) -> str | None:
    meta = _phonenumbers().PhoneMetadata.metadata_for_region(region)
    return None if meta is None else (meta.national_prefix or "")


def _national_shape_ok(pn, s: str, region: str) -> bool:
    """A number without a country code must look as its region writes them: NANP 3-3-4 groups;
    in regions with a trunk prefix (``0`` in most of Europe and Asia) it starts with it; else
    at least 9 digits. Tables of page numbers, times and addresses fail this; libphonenumber
    alone accepts many of them (Austria's numbers have almost any length)."""
    prefix = _national_prefix(region)
    if prefix is None:
        return False
    if region in ("US", "CA") or pn.country_code_for_region(region) == 1:
        return bool(_NANP.fullmatch(s))
    digits = s.lstrip("(")
    if prefix:
        return digits.startswith(prefix)
    return sum(c.isdigit() for c in s) >= 9


def phone_ok(s: str, text: str, start: int, region: str) -> bool:
    """Is the candidate ``s`` (at ``text[start:]``) a valid phone number? See the module docstring."""
    digits = sum(c.isdigit() for c in s)
    if not 7 <= digits <= 15:
        return False
    intl = s[0] == "+" or s.startswith("00")
    if not intl:
        # a bare digit run is an order or account number far more often than a phone number
        if not _PHONE_SEP.search(s) or _DATE.match(s) or _DECIMAL.match(s) or _IPV4_SHAPE.match(s) or _SSN_SHAPE.match(s):
            return False
        if _ISBN_BEFORE.search(text, max(0, start - 16), start) or _VERSION_BEFORE.search(text, max(0, start - 24), start):
            return False
        if s.count(".") >= 2 and s.count(".") == len(_PHONE_SEP.findall(s)) and digits < 9:
            return False  # dotted groups: a version or a date, not a number
    groups = [int(g) for g in re.findall(r"\d+", s)]
    if len(groups) >= 4 and all(b == a + 1 for a, b in zip(groups, groups[1:])):
        return False  # a calendar row or a numbered list: 01 02 03 04 ...
    pn = _phonenumbers()
    if not intl and not _national_shape_ok(pn, s, region):
        return False
    try:
        num = pn.parse("+" + s[2:] if s.startswith("00") else s, None if intl else region)
    except pn.NumberParseException:
        return False
    return pn.is_valid_number(num)


def _ipv6_spans(text: str) -> list[tuple[int, int, str]]:
    out, done = [], -1
    for seed in _IPV6_SEED.finditer(text):
        a = seed.start()
        if a < done:
            continue
        while a > 0 and text[a - 1] in _HEXCOLON:
            a -= 1
        if a > 0 and (text[a - 1].isalnum() or text[a - 1] in "_."):
            continue
        m = _IPV6.match(text, a)
        if m and m.end() > seed.start() and _ipv6_ok(m.group(0)):
            out.append((m.start(), m.end(), "ip"))
            done = m.end()
    return out


def _emails(text: str) -> list[tuple[int, int, str]]:
    out = []
    at = text.find("@")
    while at > 0:
        loc = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        host = _EMAIL_HOST.match(text, at + 1) if loc else None
        if host and host.group(1).lower() not in _NOT_TLD:
            a = loc.start()
            # a longer local part than 64 characters, or one glued to other word characters, is not an address
            if a == 0 or not _EMAIL_BEFORE.match(text, a - 1):
                out.append((a, host.end(), "email"))
        at = text.find("@", at + 1)
    return out


def find_spans(text: str, types: frozenset[str] | set[str] = frozenset(TYPES), region: str = "US",
               prefiltered: frozenset[str] | set[str] | None = None) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, type)`` PII spans of ``text``, sorted by start.

    ``types``: the types to look for; ``prefiltered``: the subset the RE2 prefilter found
    candidates for (None: all of ``types``); ``region``: ISO region for national phone numbers."""
    look = types if prefiltered is None else prefiltered
    found: list[tuple[int, int, str]] = []
    if "email" in look:
        found += _emails(text)
    if "iban" in look:
        # an IBAN-shaped run that fails its checksum is a mistyped IBAN, not a card or phone
        # number inside one: it blocks the other types and is not reported
        found += [(m.start(), m.end(), "iban" if iban_ok(m.group(0)) else "_iban_like")
                  for m in _IBAN.finditer(text) if m.group(0)[:2] in _IBAN_LEN]
    if "card" in look:
        found += [(m.start(), m.end(), "card") for m in _CARD.finditer(text) if card_ok(m.group(0))]
    if "ssn" in look:
        found += [(m.start(), m.end(), "ssn") for m in _SSN.finditer(text)
                  if ssn_ok(*m.group(0).split("-")) and not _PHONE_PREFIX.search(text, max(0, m.start() - 8), m.start())]
    if "ip" in look:
        found += [(m.start(), m.end(), "ip") for m in _IPV4.finditer(text) if _ipv4_ok(m, text)]
        if ":" in text:
            found += _ipv6_spans(text)
    if "phone" in look:
        for m in _PHONE.finditer(text):
            s = m.group(0).rstrip(" .-/")
            if phone_ok(s, text, m.start(), region):
                found.append((m.start(), m.start() + len(s), "phone"))
    if not found:
        return found
    rank = {t: i for i, t in enumerate(("email", "iban", "_iban_like", *TYPES[2:]))}
    found.sort(key=lambda f: (rank[f[2]], f[0]))
    taken: list[tuple[int, int, str]] = []
    for f in found:  # a handful of spans per document: quadratic is fine
        if all(f[1] <= a or f[0] >= b for a, b, _ in taken):
            taken.append(f)
    return sorted(f for f in taken if f[2] != "_iban_like")
