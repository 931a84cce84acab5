"""News-style sentences in six languages, from the data files ``data/<code>.json``.

One generic generator, one data file per language (word lists per topic, sentence
templates, site boilerplate). Sentences are grammatical, so that a language
identifier (fastText lid.176) names the language and a KenLM model trained on
``reference_corpus/<lang>.txt`` (same generator, other sentences) scores the
articles as head/middle while keyword spam lands in the tail. Adding a language is
adding its file and its code to ``data/languages.json``; nothing here touches the
network or writes to disk.

Data file keys (``en.json`` is the plainest example):

- ``subjects`` / ``verbs`` / ``objects``: per topic; a subject is ``text`` or
  ``[text, gender]``, a verb ``[past, infinitive]`` or one form for both.
- ``facts`` (per topic), ``numeric`` (with ``{n} {y} {m} {k}``): whole sentences.
- ``first_names`` (``name`` or ``[name, gender]``), ``last_names``, ``roles`` (per
  topic; ``role`` or ``[masculine, feminine]``), optional ``feminine_surname``
  (``{"endings": [...], "add": "..."}``) and ``name_sep`` (between first and last).
- ``verb_endings``: optional gender map appended to the past form (Russian).
- ``elision``: optional ``{"before": letters, "words": {"que": "qu'"}}`` for
  ``{slot:elide}`` (French).
- ``words``: what the templates name besides the fixed slots below. A list gives
  one random pick per use; a string, or a gender map (``{"f": ..., "*": ...}``),
  is inserted as is. A picked gender map needs ``@`` to say whose gender.
- ``templates``: the sentence shapes; the first one, without its full stop, makes
  headlines. Slots: ``{S} {V} {Vinf} {O}`` (subject, past verb, infinitive,
  object of one clause), ``{S2} {V2} {Vinf2} {O2}`` (a second clause, redrawn until
  its subject and object differ from the first's), ``{name} {role}`` (a person
  quoted), any key of ``words``. Suffixes: ``@S``/``@S2``/``@person`` (agree
  with that gender), ``:cap`` (upper-case first letter), ``:elide``.
  Random draws happen in this order: clause 1, clause 2, then the person and the
  word picks in text order; ``{"text": ..., "draw": ["person"]}`` moves the named
  units (``clause``, ``clause2``, ``person`` or a word) to the front.
- ``script`` (``latin``, ``cyrillic``, ``han``), ``sentence_sep``; page strings:
  ``boilerplate``, ``sites`` (``[name, domain]``), ``subheads``, ``comments``,
  ``table_head``.

The draw order is part of the output: the sample crawl is byte-identical for a
seed only while every template draws in the same order.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

TOPICS = ("city", "science", "economy", "culture")
DATA_DIR = Path(__file__).with_name("data")

_WORD = re.compile(r"\w+")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_SLOT = re.compile(r"\{(\w+)(?:@(\w+))?(?::(\w+))?\}")
#: fixed template slots -> (unit, what); a unit is drawn once however often it is named
_FIXED = {"S": ("clause", "s"), "V": ("clause", "v"), "Vinf": ("clause", "vinf"), "O": ("clause", "o"),
          "S2": ("clause2", "s"), "V2": ("clause2", "v"), "Vinf2": ("clause2", "vinf"), "O2": ("clause2", "o"),
          "name": ("person", "name"), "role": ("person", "role")}
_GENDER_OF = {"S": ("clause", "g"), "S2": ("clause2", "g"), "person": ("person", "g")}
_MODS = {None, "cap", "elide"}


def cap(s: str) -> str:
    """Upper-case the first letter (leaves « and „ quotes alone)."""
    return s[:1].upper() + s[1:] if s else s


def _gendered(form, g: str) -> str:
    """``form`` itself, or its entry for gender ``g`` (``*`` for any other)."""
    return form if isinstance(form, str) else form.get(g, form["*"])


@dataclass
class Boilerplate:
    """Strings of the page around the article, in the page's language."""

    nav: list[str]
    cookie: str
    accept: str
    search: str
    home: str
    related: str
    share: str
    comments: str
    newsletter: str
    footer_links: list[str]
    rights: str
    byline: str
    topic_names: dict[str, str]


@dataclass
class Template:
    """One sentence shape: ``parts`` are literals and ``(slot, gender_of, modifier)``;
    ``draw`` the units in the order their random draws happen."""

    parts: list
    draw: list

    @classmethod
    def parse(cls, spec, words: dict, where: str) -> Template:
        text, first = (spec, []) if isinstance(spec, str) else (spec["text"], list(spec.get("draw", [])))
        parts: list = []
        units: list = []          # default order: clauses, then the rest in text order
        pos = 0
        for m in _SLOT.finditer(text):
            parts.append(text[pos:m.start()])
            pos = m.end()
            slot, agree, mod = m.groups()
            if slot not in _FIXED and slot not in words:
                raise ValueError(f"{where}: template slot {{{slot}}} is neither fixed nor in 'words'")
            if mod not in _MODS or (agree and agree not in _GENDER_OF):
                raise ValueError(f"{where}: bad slot {m.group(0)}")
            # a word list is one draw per use; the fixed slots and fixed words draw per unit
            unit = _FIXED[slot][0] if slot in _FIXED else (("pick", len(parts)) if isinstance(words[slot], list) else None)
            for u in (unit, _GENDER_OF[agree][0] if agree else None):
                if u and u not in units:
                    units.append(u)
            parts.append((slot, agree, mod))
        parts.append(text[pos:])
        clauses = [u for u in ("clause", "clause2") if u in units]
        order = clauses + [u for u in units if u not in clauses]
        front = []
        for name in first:
            picks = [u for u in order if u == name or (isinstance(u, tuple) and parts[u[1]][0] == name)]
            if not picks:
                raise ValueError(f"{where}: draw names {name!r}, which the template does not use")
            front += picks
        return cls(parts, front + [u for u in order if u not in front])


@dataclass
class Lang:
    """Word lists and templates of one language; ``sentence()`` makes one sentence."""

    code: str
    script: str                    # latin / cyrillic / han
    sep: str                       # between sentences
    name_sep: str                  # between first and last name
    subjects: dict[str, list]      # topic -> subjects (text or [text, gender])
    verbs: dict[str, list]         # topic -> [past, infinitive] or one form
    objects: dict[str, list[str]]  # topic -> object noun phrases (accusative where it matters)
    facts: dict[str, list[str]]    # topic -> standalone sentences
    first: list                    # first names (name or [name, gender])
    last: list[str]
    roles: dict[str, list]         # topic -> roles of people quoted (role or [masculine, feminine])
    numeric: list[str]             # templates with {n}, {y}, {m}, {k}
    comments: list[str]            # reader comments
    table_head: list[str]
    boiler: Boilerplate
    sites: list[tuple[str, str]]   # (site name, domain)
    subheads: list[str]            # article sub-headings
    words: dict                    # what templates name: lists (one pick per use), fixed strings, gender maps
    templates: list[Template]
    verb_endings: dict = field(default_factory=dict)
    feminine_surname: dict = field(default_factory=dict)
    elision: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Lang:
        """Read one language file; a slot the file does not define is a ValueError naming it."""
        d = json.loads(path.read_text(encoding="utf-8"))
        if d["code"] != path.stem:
            raise ValueError(f"{path}: code {d['code']!r} does not match the file name")
        for key in ("subjects", "verbs", "objects", "facts", "roles"):
            if set(d[key]) != set(TOPICS):
                raise ValueError(f"{path}: {key} must have exactly the topics {TOPICS}")
        words = d["words"]
        return cls(
            code=d["code"], script=d["script"], sep=d["sentence_sep"], name_sep=d.get("name_sep", " "),
            subjects=d["subjects"], verbs=d["verbs"], objects=d["objects"], facts=d["facts"],
            first=d["first_names"], last=d["last_names"], roles=d["roles"], numeric=d["numeric"],
            comments=d["comments"], table_head=d["table_head"], boiler=Boilerplate(**d["boilerplate"]),
            sites=[tuple(s) for s in d["sites"]], subheads=d["subheads"], words=words,
            templates=[Template.parse(t, words, f"{path.name} template {i}") for i, t in enumerate(d["templates"])],
            verb_endings=d.get("verb_endings", {}), feminine_surname=d.get("feminine_surname", {}),
            elision=d.get("elision", {}))

    # -- building blocks ----------------------------------------------------
    def pick(self, rng: random.Random, xs: list):
        return xs[rng.randrange(len(xs))]

    def person(self, rng: random.Random, topic: str) -> str:
        return self.person_role(rng, topic)[0]

    def person_role(self, rng: random.Random, topic: str) -> tuple[str, str, str]:
        """(name, role, gender) with the role in the person's grammatical gender."""
        first = self.pick(rng, self.first)
        first, g = first if isinstance(first, list) else (first, "")
        last = self.pick(rng, self.last)
        fem = self.feminine_surname
        if fem and g == "f" and last.endswith(tuple(fem["endings"])):
            last += fem["add"]
        role = self.pick(rng, self.roles[topic])
        if isinstance(role, list):
            role = role[1] if g == "f" else role[0]
        return f"{first}{self.name_sep}{last}", role, g

    def clause(self, rng: random.Random, topic: str) -> dict:
        """Subject, verb and object of one clause (the verb's past form agrees with the subject)."""
        s = self.pick(rng, self.subjects[topic])
        v = self.pick(rng, self.verbs[topic])
        o = self.pick(rng, self.objects[topic])
        s, g = s if isinstance(s, list) else (s, "")
        past, inf = (v, v) if isinstance(v, str) else v
        if self.verb_endings:
            past += self.verb_endings[g]
        return {"s": s, "g": g, "v": past, "vinf": inf, "o": o}

    def render(self, t: Template, rng: random.Random, topic: str) -> str:
        """One sentence from template ``t`` (draws in ``t.draw`` order, then fills in text order)."""
        drawn: dict = {}
        for unit in t.draw:
            if unit == "clause":
                drawn[unit] = self.clause(rng, topic)
            elif unit == "clause2":
                c1, c2 = drawn["clause"], self.clause(rng, topic)
                while c2["s"] == c1["s"] or c2["o"] == c1["o"]:
                    c2 = self.clause(rng, topic)
                drawn[unit] = c2
            elif unit == "person":
                name, role, g = self.person_role(rng, topic)
                drawn[unit] = {"name": name, "role": role, "g": g}
            else:                                   # ("pick", part index): one word-list pick
                drawn[unit] = self.pick(rng, self.words[t.parts[unit[1]][0]])
        out = ""
        for i, part in enumerate(t.parts):
            if isinstance(part, str):
                out += part
                continue
            slot, agree, mod = part
            if slot in _FIXED:
                unit, key = _FIXED[slot]
                value = drawn[unit][key]
            else:
                w = self.words[slot]
                value = drawn[("pick", i)] if isinstance(w, list) else w
            if agree:
                unit, key = _GENDER_OF[agree]
                value = _gendered(value, drawn[unit][key])
            if mod == "cap":
                value = cap(value)
            elif mod == "elide":
                out = self._elide(out, value)
            out += value
        return out

    def _elide(self, before: str, nxt: str) -> str:
        """``before`` with its last word elided (``que `` -> ``qu'``) when ``nxt`` starts with a vowel."""
        if not self.elision or not nxt or nxt[0] not in self.elision["before"]:
            return before
        for word, short in self.elision["words"].items():
            if before.endswith(" " + word + " "):
                return before[:-len(word) - 1] + short
        return before

    def number_sentence(self, rng: random.Random) -> str:
        return self.pick(rng, self.numeric).format(n=rng.randint(3, 97), y=rng.randint(2009, 2022),
                                                   m=rng.randint(2, 480), k=rng.randint(120, 9800))

    def sentence(self, rng: random.Random, topic: str) -> str:
        r = rng.random()
        if r < 0.10:
            return self.pick(rng, self.facts[topic])
        if r < 0.16:
            return self.number_sentence(rng)
        return self.render(self.pick(rng, self.templates), rng, topic)

    def ngrams(self, text: str) -> set:
        """Word 5-grams (han: 5-grams of Han characters, one word each), what Gopher's
        repetition rules count."""
        if self.script == "han":
            cs = _HAN.findall(text)
            return {"".join(cs[i:i + 5]) for i in range(len(cs) - 4)}
        w = _WORD.findall(text.lower())
        return {tuple(w[i:i + 5]) for i in range(len(w) - 4)}

    def article(self, rng: random.Random, topic: str, n_par: int, *, avoid: str = "") -> list[str]:
        """Paragraphs of 3-6 sentences in which no word 5-gram occurs twice (nor one of
        ``avoid``, the title): real articles pass Gopher's repetition rules, and a
        template grammar with short word lists would not without this. Stops early
        (fewer paragraphs) when the lists run dry, which takes 20+ sentences."""
        seen = self.ngrams(avoid)
        paras: list[str] = []
        for _ in range(n_par):
            sents: list[str] = []
            want = rng.randint(3, 6)
            misses = 0
            while len(sents) < want and misses < 60:
                s = self.sentence(rng, topic)
                g = self.ngrams(s)
                if g & seen or s in sents:
                    misses += 1
                    continue
                seen |= g
                sents.append(s)
            if len(sents) < 2:
                break
            paras.append(self.sep.join(sents))
        return paras

    def paragraph(self, rng: random.Random, topic: str, n: int) -> str:
        """One paragraph of ``n`` sentences (repetition allowed across paragraphs)."""
        out: list[str] = []
        while len(out) < n:
            s = self.sentence(rng, topic)
            if s not in out:
                out.append(s)
        return self.sep.join(out)

    def headline(self, rng: random.Random, topic: str) -> str:
        return self.render(self.templates[0], rng, topic).rstrip(".。")


def load_langs(data_dir: Path = DATA_DIR) -> dict[str, Lang]:
    """The languages ``languages.json`` lists (in its order), each from ``<code>.json``."""
    codes = json.loads((data_dir / "languages.json").read_text(encoding="utf-8"))
    return {code: Lang.load(data_dir / f"{code}.json") for code in codes}


LANGS: dict[str, Lang] = load_langs()
