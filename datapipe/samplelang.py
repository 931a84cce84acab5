"""Sentence generators for the sample crawl, one per language (en, de, fr, es, ru, zh).

Each language has its own grammar (German verb-final perfect tense, Russian past
tense agreeing with the subject's gender, Chinese without spaces ...), its own word
lists per topic and its own site boilerplate (navigation, cookie banner, footer).
Sentences are news-style and grammatical, so that a language identifier (fastText
lid.176) names the language and a KenLM model trained on
``reference_corpus/<lang>.txt`` (same generators, other sentences) scores the
articles as head/middle while keyword spam lands in the tail.

Used by :mod:`datapipe.samplecrawl`; nothing here touches the network or disk.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

TOPICS = ("city", "science", "economy", "culture")
_WORD = re.compile(r"\w+")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def cap(s: str) -> str:
    """Upper-case the first letter (leaves « and „ quotes alone)."""
    return s[:1].upper() + s[1:] if s else s


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
class Lang:
    """Word lists and templates of one language; ``sentence()`` makes one sentence."""

    code: str
    sep: str                       # between sentences
    subjects: dict[str, list]      # topic -> subjects (ru: (text, gender))
    verbs: dict[str, list]         # topic -> verb forms (tuple; language-specific)
    objects: dict[str, list[str]]  # topic -> object noun phrases (accusative where it matters)
    facts: dict[str, list[str]]    # topic -> standalone sentences
    times: list[str]
    future: list[str]
    places: list[str]
    sources: list[str]
    connectors: list[str]
    quotes: list[str]
    first: list                    # first names (ru: (name, gender))
    last: list[str]
    roles: dict[str, list[str]]    # topic -> roles of people quoted
    numeric: list[str]             # templates with {n}, {y}
    comments: list[str]            # reader comments
    table_head: list[str]
    boiler: Boilerplate
    sites: list[tuple[str, str]]   # (site name, domain)
    subheads: list[str] = field(default_factory=list)   # article sub-headings
    templates: list = field(default_factory=list)

    # -- building blocks ----------------------------------------------------
    def pick(self, rng: random.Random, xs: list):
        return xs[rng.randrange(len(xs))]

    def person(self, rng: random.Random, topic: str) -> str:
        return self.person_role(rng, topic)[0]

    def person_role(self, rng: random.Random, topic: str) -> tuple[str, str, str]:
        """(name, role, gender) with the role in the person's grammatical gender."""
        first = self.pick(rng, self.first)
        first, g = first if isinstance(first, tuple) else (first, "")
        last = self.pick(rng, self.last)
        if self.code == "ru" and g == "f" and last.endswith(("ов", "ев", "ин")):
            last += "а"
        role = self.pick(rng, self.roles[topic])
        if isinstance(role, tuple):
            role = role[1] if g == "f" else role[0]
        return f"{first}{'' if self.code == 'zh' else ' '}{last}", role, g

    def number_sentence(self, rng: random.Random) -> str:
        return self.pick(rng, self.numeric).format(n=rng.randint(3, 97), y=rng.randint(2009, 2022),
                                                   m=rng.randint(2, 480), k=rng.randint(120, 9800))

    def sentence(self, rng: random.Random, topic: str) -> str:
        r = rng.random()
        if r < 0.10:
            return self.pick(rng, self.facts[topic])
        if r < 0.16:
            return self.number_sentence(rng)
        return self.pick(rng, self.templates)(self, rng, topic)

    def ngrams(self, text: str) -> set:
        """Word 5-grams (zh: 5-grams of Han characters, one word each), what Gopher's
        repetition rules count."""
        if self.code == "zh":
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
        return self.templates[0](self, rng, topic).rstrip(".。")


def _pr(L: Lang, rng: random.Random, t: str, zh: bool = False) -> str:
    """'Name, role' (zh: role then name, no comma)."""
    name, role, _ = L.person_role(rng, t)
    return f"{role}{name}" if zh else f"{name}, {role}"


# ===========================================================================
# English

def _en_svo(L: Lang, rng: random.Random, t: str) -> tuple[str, str, str]:
    return L.pick(rng, L.subjects[t]), L.pick(rng, L.verbs[t]), L.pick(rng, L.objects[t])


def _en_t1(L, rng, t):
    s, v, o = _en_svo(L, rng, t)
    return f"{cap(s)} {v[0]} {o} {L.pick(rng, L.times)}."


def _en_t2(L, rng, t):
    s, v, o = _en_svo(L, rng, t)
    return f"{cap(L.pick(rng, L.times))}, {s} {v[0]} {o} {L.pick(rng, L.places)}."


def _en_t3(L, rng, t):
    s, v, o = _en_svo(L, rng, t)
    return f"According to {L.pick(rng, L.sources)}, {s} {v[0]} {o}."


def _en_t4(L, rng, t):
    return f"\u201c{L.pick(rng, L.quotes)},\u201d said {_pr(L, rng, t)}."


def _en_t5(L, rng, t):
    s, v, o = _en_svo(L, rng, t)
    s2, v2, o2 = _en_svo(L, rng, t)
    while s2 == s or o2 == o:
        s2, v2, o2 = _en_svo(L, rng, t)
    return f"{cap(s)} {v[0]} {o}, while {s2} {v2[0]} {o2}."


def _en_t6(L, rng, t):
    s, v, o = _en_svo(L, rng, t)
    return f"{L.pick(rng, L.connectors)} {s} {v[0]} {o} {L.pick(rng, L.places)}."


def _en_t7(L, rng, t):
    s, v, o = _en_svo(L, rng, t)
    return f"{cap(s)} {L.pick(rng, ['plans to', 'hopes to', 'is expected to', 'wants to'])} {v[1]} {o} {L.pick(rng, L.future)}."


def _en_t8(L, rng, t):
    s, v, o = _en_svo(L, rng, t)
    return f"{_pr(L, rng, t)}, said that {s} {v[0]} {o} {L.pick(rng, L.times)}."


EN = Lang(
    code="en", sep=" ",
    subjects={
        "city": ["the city council", "the mayor", "the transport committee", "the planning office", "the county board",
                 "the housing department", "a group of local residents", "the opposition party", "the regional government"],
        "science": ["the research team", "a group of biologists", "the university laboratory", "the national space agency",
                    "a team of climate scientists", "the museum of natural history", "the medical faculty", "a young physicist"],
        "economy": ["the central bank", "the chamber of commerce", "the largest employer in the region", "the finance ministry",
                    "a local bakery chain", "the port authority", "the national statistics office", "the trade union"],
        "culture": ["the city theatre", "the public library", "the film festival", "the regional orchestra",
                    "a small publishing house", "the art museum", "the organisers of the book fair", "a local choir"],
    },
    verbs={
        "city": [("approved", "approve"), ("presented", "present"), ("criticised", "criticise"), ("announced", "announce"),
                 ("postponed", "postpone"), ("revised", "revise"), ("rejected", "reject")],
        "science": [("published", "publish"), ("presented", "present"), ("tested", "test"), ("confirmed", "confirm"),
                    ("described", "describe"), ("measured", "measure"), ("questioned", "question")],
        "economy": [("reported", "report"), ("announced", "announce"), ("raised", "raise"), ("cut", "cut"),
                    ("defended", "defend"), ("revised", "revise"), ("expanded", "expand")],
        "culture": [("opened", "open"), ("presented", "present"), ("announced", "announce"), ("cancelled", "cancel"),
                    ("restored", "restore"), ("celebrated", "celebrate"), ("launched", "launch")],
    },
    objects={
        "city": ["a new budget for the coming year", "plans for a second bridge over the river", "the renovation of the main station",
                 "new rules for parking in the old town", "a programme for affordable housing", "the extension of the tram line",
                 "a proposal to close the night market", "the plan for more cycle lanes", "the design of the new school"],
        "science": ["a study on the migration of songbirds", "new data on sea level rise", "a cheaper method for cleaning water",
                    "the results of a ten-year field study", "a model of the early universe", "a vaccine against a common virus",
                    "evidence of ice beneath the surface", "a sensor that detects air pollution", "the first map of the deep reef"],
        "economy": ["its forecast for economic growth", "the interest rate by a quarter point", "plans to hire two hundred workers",
                    "new figures on unemployment", "the price of its products", "a deal with its largest supplier",
                    "the wages of its employees", "its investment in renewable energy", "the opening of a new factory"],
        "culture": ["a new exhibition on modern painting", "its programme for the autumn season", "a festival of short films",
                    "the collection of historic maps", "the winner of this year's poetry prize", "a series of free concerts",
                    "the restored organ of the old church", "a play about the history of the harbour", "a reading by a young novelist"],
    },
    facts={
        "city": ["The decision is expected to affect thousands of residents.", "Several streets will be closed while the work is carried out.",
                 "The project has been discussed for more than a decade.", "Many people in the neighbourhood welcomed the news.",
                 "A final vote is planned for the next session of the council."],
        "science": ["The findings were published in a peer-reviewed journal.", "Other researchers say more work is needed to confirm the results.",
                    "The experiment took almost three years to complete.", "The data will be made available to other scientists.",
                    "Funding for the project came from a national research programme."],
        "economy": ["Analysts had expected a smaller change.", "The company employs more than four thousand people in the region.",
                    "Consumer prices have risen steadily over the past year.", "Small businesses say they are struggling with higher costs.",
                    "The figures will be revised again next quarter."],
        "culture": ["Tickets are available at the box office and online.", "The exhibition will remain open until the end of the year.",
                    "Admission is free for children and students.", "The building was fully renovated last summer.",
                    "The event attracted visitors from across the country."],
    },
    times=["on Tuesday", "last week", "earlier this month", "on Monday evening", "in March", "after months of debate",
           "this spring", "late on Friday", "over the weekend", "on Thursday morning", "at the end of last year", "yesterday"],
    future=["by the end of the year", "next spring", "within two years", "before the summer", "in the coming months",
            "by next autumn", "over the next decade"],
    places=["at a press conference", "in a public hearing", "in the town hall", "at the regional office", "in a short statement",
            "during a meeting with residents", "in an interview with local radio", "at the annual meeting"],
    sources=["a statement published on its website", "officials familiar with the matter", "a report released on Thursday",
             "local media", "figures from the statistics office", "a spokesperson", "documents seen by this newspaper"],
    connectors=["However,", "Meanwhile,", "At the same time,", "In addition,", "As a result,", "Nevertheless,", "For now,", "Earlier,"],
    quotes=["This is an important step for the whole region", "We still have a lot of work to do",
            "Nobody expected the numbers to change so quickly", "The decision was not easy, but it was necessary",
            "We will continue to listen to everyone involved", "It is too early to draw any conclusions",
            "People here have waited a long time for this", "We are proud of what the team has achieved",
            "There are still many open questions", "This will make a real difference for families"],
    first=["Sarah", "James", "Emily", "Daniel", "Laura", "Michael", "Rachel", "David", "Hannah", "Thomas", "Olivia", "Peter"],
    last=["Thompson", "Walker", "Bennett", "Hughes", "Carter", "Mitchell", "Foster", "Reynolds", "Palmer", "Gray", "Holloway", "Price"],
    roles={
        "city": ["a spokesperson for the council", "a member of the planning committee", "a resident of the area", "the deputy mayor"],
        "science": ["the lead author of the study", "a researcher at the university", "a professor of biology", "an independent expert"],
        "economy": ["an economist at a local bank", "the head of the chamber of commerce", "a union representative", "the chief executive"],
        "culture": ["the director of the museum", "the festival organiser", "a local author", "the conductor of the orchestra"],
    },
    numeric=["The cost is estimated at {m} million dollars.", "About {k} people took part, according to the organisers.",
             "The number has risen by {n} percent since {y}.", "Only {n} percent of those asked were satisfied with the result.",
             "The last comparable change took place in {y}.", "Around {k} households are affected, officials said."],
    comments=["Great article, thanks for the clear summary.", "I live nearby and this has been a problem for years.",
              "Does anyone know when the meeting will take place?", "Finally some good news for our town."],
    table_head=["Year", "Amount", "Change"],
    boiler=Boilerplate(
        nav=["Home", "News", "Politics", "Business", "Science", "Culture", "Opinion", "Contact"],
        cookie="We use cookies to improve your experience on our website. By continuing to browse, you agree to our use of cookies.",
        accept="Accept all cookies", search="Search this site", home="Home", related="Related articles",
        share="Share this article", comments="Reader comments", newsletter="Subscribe to our newsletter for the latest headlines.",
        footer_links=["About us", "Privacy policy", "Terms of use", "Advertise with us", "Contact the newsroom"],
        rights="All rights reserved.", byline="By",
        topic_names={"city": "Local news", "science": "Science", "economy": "Business", "culture": "Culture"},
    ),
    sites=[("Riverside Gazette", "riverside-gazette.com"), ("The Northern Courier", "northern-courier.co.uk"),
           ("Harbor City Times", "harborcitytimes.com"), ("Valley Science Weekly", "valleyscienceweekly.org"),
           ("Lakeside Daily", "lakeside-daily.net")],
    subheads=["Background", "What happens next", "Reactions", "A long debate", "The numbers", "Open questions"],
    templates=[_en_t1, _en_t2, _en_t3, _en_t4, _en_t5, _en_t6, _en_t7, _en_t8],
)


# ===========================================================================
# German: perfect tense, participle last; V2 after a fronted adverbial

def _de_svo(L, rng, t):
    return L.pick(rng, L.subjects[t]), L.pick(rng, L.verbs[t]), L.pick(rng, L.objects[t])


def _de_t1(L, rng, t):
    s, v, o = _de_svo(L, rng, t)
    return f"{cap(s)} hat {L.pick(rng, L.times)} {o} {v[0]}."


def _de_t2(L, rng, t):
    s, v, o = _de_svo(L, rng, t)
    return f"{cap(L.pick(rng, L.times))} hat {s} {L.pick(rng, L.places)} {o} {v[0]}."


def _de_t3(L, rng, t):
    s, v, o = _de_svo(L, rng, t)
    return f"Nach Angaben {L.pick(rng, L.sources)} hat {s} {o} {v[0]}."


def _de_t4(L, rng, t):
    return f"\u201e{L.pick(rng, L.quotes)}\u201c, sagte {_pr(L, rng, t)}."


def _de_t5(L, rng, t):
    s, v, o = _de_svo(L, rng, t)
    s2, v2, o2 = _de_svo(L, rng, t)
    while s2 == s or o2 == o:
        s2, v2, o2 = _de_svo(L, rng, t)
    return f"{cap(s)} hat {o} {v[0]}, während {s2} {o2} {v2[0]} hat."


def _de_t6(L, rng, t):
    s, v, o = _de_svo(L, rng, t)
    return f"{L.pick(rng, L.connectors)} hat {s} {o} {v[0]}."


def _de_t7(L, rng, t):
    s, v, o = _de_svo(L, rng, t)
    return f"{cap(s)} {L.pick(rng, ['will', 'möchte', 'soll'])} {L.pick(rng, L.future)} {o} {v[1]}."


def _de_t8(L, rng, t):
    s, v, o = _de_svo(L, rng, t)
    return f"{_pr(L, rng, t)}, sagte, {s} habe {o} {v[0]}."


DE = Lang(
    code="de", sep=" ",
    subjects={
        "city": ["der Stadtrat", "die Bürgermeisterin", "die Stadtverwaltung", "der Verkehrsausschuss", "das Bauamt",
                 "die Opposition im Rathaus", "der Bezirksbeirat", "die Landesregierung"],
        "science": ["das Forschungsteam", "eine Gruppe von Biologinnen", "das Institut für Klimaforschung", "die Universität",
                    "ein junger Physiker", "das Naturkundemuseum", "die medizinische Fakultät", "das Labor"],
        "economy": ["die Zentralbank", "die Industrie- und Handelskammer", "der größte Arbeitgeber der Region",
                    "das Finanzministerium", "eine örtliche Bäckereikette", "die Hafenverwaltung", "das Statistische Landesamt",
                    "die Gewerkschaft"],
        "culture": ["das Stadttheater", "die Stadtbibliothek", "das Filmfestival", "das Landesorchester", "ein kleiner Verlag",
                    "das Kunstmuseum", "der Veranstalter der Buchmesse", "ein Chor aus der Altstadt"],
    },
    verbs={
        "city": [("beschlossen", "beschließen"), ("vorgestellt", "vorstellen"), ("kritisiert", "kritisieren"),
                 ("angekündigt", "ankündigen"), ("verschoben", "verschieben"), ("überarbeitet", "überarbeiten"),
                 ("abgelehnt", "ablehnen")],
        "science": [("veröffentlicht", "veröffentlichen"), ("vorgestellt", "vorstellen"), ("getestet", "testen"),
                    ("bestätigt", "bestätigen"), ("beschrieben", "beschreiben"), ("gemessen", "messen"), ("untersucht", "untersuchen")],
        "economy": [("gemeldet", "melden"), ("angekündigt", "ankündigen"), ("erhöht", "erhöhen"), ("gesenkt", "senken"),
                    ("verteidigt", "verteidigen"), ("korrigiert", "korrigieren"), ("ausgebaut", "ausbauen")],
        "culture": [("eröffnet", "eröffnen"), ("vorgestellt", "vorstellen"), ("angekündigt", "ankündigen"), ("abgesagt", "absagen"),
                    ("restauriert", "restaurieren"), ("gefeiert", "feiern"), ("gestartet", "starten")],
    },
    objects={
        "city": ["einen neuen Haushalt für das kommende Jahr", "die Pläne für eine zweite Brücke über den Fluss",
                 "die Sanierung des Hauptbahnhofs", "neue Regeln für das Parken in der Altstadt", "ein Programm für bezahlbaren Wohnraum",
                 "die Verlängerung der Straßenbahnlinie", "den Vorschlag für mehr Radwege", "den Entwurf für die neue Grundschule"],
        "science": ["eine Studie über den Zug der Singvögel", "neue Daten zum Anstieg des Meeresspiegels",
                    "ein günstigeres Verfahren zur Reinigung von Wasser", "die Ergebnisse einer zehnjährigen Feldstudie",
                    "ein Modell des frühen Universums", "einen Impfstoff gegen ein verbreitetes Virus",
                    "einen Sensor für die Messung von Feinstaub", "die erste Karte des tiefen Riffs"],
        "economy": ["die Prognose für das Wirtschaftswachstum", "den Leitzins um einen Viertelpunkt",
                    "die Einstellung von zweihundert Beschäftigten", "neue Zahlen zur Arbeitslosigkeit", "die Preise für ihre Produkte",
                    "einen Vertrag mit dem wichtigsten Zulieferer", "die Löhne der Beschäftigten", "die Investitionen in erneuerbare Energien"],
        "culture": ["eine neue Ausstellung über moderne Malerei", "das Programm für die Herbstsaison", "ein Festival für Kurzfilme",
                    "die Sammlung historischer Landkarten", "den Gewinner des diesjährigen Lyrikpreises", "eine Reihe kostenloser Konzerte",
                    "die restaurierte Orgel der alten Kirche", "ein Theaterstück über die Geschichte des Hafens"],
    },
    facts={
        "city": ["Die Entscheidung betrifft nach Schätzungen mehrere tausend Anwohner.",
                 "Während der Bauarbeiten werden mehrere Straßen gesperrt.", "Über das Projekt wird seit mehr als zehn Jahren diskutiert.",
                 "Viele Menschen im Viertel haben die Nachricht begrüßt.", "Die endgültige Abstimmung ist für die nächste Sitzung geplant."],
        "science": ["Die Ergebnisse sind in einer Fachzeitschrift erschienen.", "Andere Fachleute halten weitere Untersuchungen für nötig.",
                    "Das Experiment hat fast drei Jahre gedauert.", "Die Daten sollen auch anderen Forschenden zur Verfügung stehen.",
                    "Das Projekt wird aus einem nationalen Forschungsprogramm finanziert."],
        "economy": ["Fachleute hatten mit einer kleineren Veränderung gerechnet.",
                    "Das Unternehmen beschäftigt in der Region mehr als viertausend Menschen.",
                    "Die Verbraucherpreise sind im vergangenen Jahr stetig gestiegen.",
                    "Kleine Betriebe klagen über die hohen Kosten.", "Die Zahlen werden im nächsten Quartal noch einmal überprüft."],
        "culture": ["Karten gibt es an der Abendkasse und im Internet.", "Die Ausstellung ist noch bis zum Ende des Jahres zu sehen.",
                    "Für Kinder und Studierende ist der Eintritt frei.", "Das Gebäude wurde im vergangenen Sommer vollständig renoviert.",
                    "Die Veranstaltung hat Besucher aus dem ganzen Land angezogen."],
    },
    times=["am Dienstag", "in der vergangenen Woche", "Anfang des Monats", "am Montagabend", "im März", "nach monatelanger Debatte",
           "in diesem Frühjahr", "am späten Freitag", "am Wochenende", "am Donnerstagmorgen", "Ende des vergangenen Jahres", "gestern"],
    future=["bis zum Ende des Jahres", "im nächsten Frühjahr", "innerhalb von zwei Jahren", "noch vor dem Sommer",
            "in den kommenden Monaten", "bis zum nächsten Herbst"],
    places=["auf einer Pressekonferenz", "in einer öffentlichen Anhörung", "im Rathaus", "in einer kurzen Mitteilung",
            "bei einem Treffen mit Anwohnern", "in einem Interview mit dem Lokalradio", "auf der Jahresversammlung"],
    sources=["der Stadtverwaltung", "des Statistischen Landesamts", "lokaler Medien", "eines Sprechers", "gut informierter Kreise",
             "der Veranstalter", "der Polizei"],
    connectors=["Außerdem", "Zugleich", "Dennoch", "Inzwischen", "Allerdings", "Zuvor", "Bereits im Januar"],
    quotes=["Das ist ein wichtiger Schritt für die ganze Region", "Wir haben noch viel Arbeit vor uns",
            "Niemand hat damit gerechnet, dass sich die Zahlen so schnell ändern", "Die Entscheidung war nicht leicht, aber notwendig",
            "Wir werden weiterhin mit allen Beteiligten sprechen", "Für ein abschließendes Urteil ist es noch zu früh",
            "Die Menschen hier haben lange darauf gewartet", "Wir sind stolz auf die Arbeit des ganzen Teams",
            "Es gibt noch viele offene Fragen"],
    first=[("Anna", "f"), ("Thomas", "m"), ("Katrin", "f"), ("Michael", "m"), ("Julia", "f"), ("Stefan", "m"), ("Sabine", "f"),
           ("Markus", "m"), ("Lena", "f"), ("Jürgen", "m"), ("Miriam", "f"), ("Florian", "m")],
    last=["Keller", "Schmidt", "Becker", "Hoffmann", "Wagner", "Schulz", "Neumann", "Krüger", "Lehmann", "Brandt", "Vogel", "Hartmann"],
    roles={
        "city": [("Sprecher der Stadt", "Sprecherin der Stadt"), ("Mitglied im Bauausschuss", "Mitglied im Bauausschuss"),
                 ("Anwohner des Viertels", "Anwohnerin des Viertels"),
                 ("stellvertretender Bürgermeister", "stellvertretende Bürgermeisterin")],
        "science": [("Hauptautor der Studie", "Hauptautorin der Studie"), ("Professor für Biologie", "Professorin für Biologie"),
                    ("Forscher an der Universität", "Forscherin an der Universität"), ("unabhängiger Experte", "unabhängige Expertin")],
        "economy": [("Volkswirt bei einer Regionalbank", "Volkswirtin bei einer Regionalbank"),
                    ("Präsident der Handelskammer", "Präsidentin der Handelskammer"),
                    ("Betriebsrat des Unternehmens", "Betriebsrätin des Unternehmens"), ("Geschäftsführer", "Geschäftsführerin")],
        "culture": [("Direktor des Museums", "Direktorin des Museums"), ("Leiter des Festivals", "Leiterin des Festivals"),
                    ("Autor aus der Stadt", "Autorin aus der Stadt"), ("Dirigent des Orchesters", "Dirigentin des Orchesters")],
    },
    numeric=["Die Kosten werden auf {m} Millionen Euro geschätzt.", "Nach Angaben der Veranstalter nahmen etwa {k} Menschen teil.",
             "Die Zahl ist seit {y} um {n} Prozent gestiegen.", "Nur {n} Prozent der Befragten waren mit dem Ergebnis zufrieden.",
             "Die letzte vergleichbare Änderung gab es im Jahr {y}.", "Betroffen sind rund {k} Haushalte."],
    comments=["Guter Artikel, danke für die klare Zusammenfassung.", "Ich wohne in der Nähe, das Problem gibt es seit Jahren.",
              "Weiß jemand, wann die Sitzung stattfindet?", "Endlich mal eine gute Nachricht für unsere Stadt."],
    table_head=["Jahr", "Betrag", "Veränderung"],
    boiler=Boilerplate(
        nav=["Startseite", "Nachrichten", "Politik", "Wirtschaft", "Wissen", "Kultur", "Meinung", "Kontakt"],
        cookie="Wir verwenden Cookies, um Ihnen ein besseres Nutzungserlebnis zu bieten. Mit der Nutzung der Seite stimmen Sie zu.",
        accept="Alle Cookies akzeptieren", search="Suche", home="Startseite", related="Das könnte Sie auch interessieren",
        share="Artikel teilen", comments="Leserkommentare", newsletter="Jetzt unseren Newsletter abonnieren und nichts verpassen.",
        footer_links=["Impressum", "Datenschutz", "Nutzungsbedingungen", "Mediadaten", "Kontakt zur Redaktion"],
        rights="Alle Rechte vorbehalten.", byline="Von",
        topic_names={"city": "Lokales", "science": "Wissen", "economy": "Wirtschaft", "culture": "Kultur"},
    ),
    sites=[("Rheinufer Nachrichten", "rheinufer-nachrichten.de"), ("Allgäuer Tagblatt Online", "allgaeuer-tagblatt.de"),
           ("Neue Hafenzeitung", "neue-hafenzeitung.de")],
    subheads=["Hintergrund", "Wie es weitergeht", "Reaktionen", "Eine lange Debatte", "Die Zahlen", "Offene Fragen"],
    templates=[_de_t1, _de_t2, _de_t3, _de_t4, _de_t5, _de_t6, _de_t7, _de_t8],
)


# ===========================================================================
# French: passé composé with avoir

def _fr_svo(L, rng, t):
    return L.pick(rng, L.subjects[t]), L.pick(rng, L.verbs[t]), L.pick(rng, L.objects[t])


def _fr_t1(L, rng, t):
    s, v, o = _fr_svo(L, rng, t)
    return f"{cap(s)} a {v[0]} {o} {L.pick(rng, L.times)}."


def _fr_t2(L, rng, t):
    s, v, o = _fr_svo(L, rng, t)
    return f"{cap(L.pick(rng, L.times))}, {s} a {v[0]} {o} {L.pick(rng, L.places)}."


def _fr_t3(L, rng, t):
    s, v, o = _fr_svo(L, rng, t)
    return f"Selon {L.pick(rng, L.sources)}, {s} a {v[0]} {o}."


def _fr_t4(L, rng, t):
    return f"\u00ab\u00a0{L.pick(rng, L.quotes)}\u00a0\u00bb, a déclaré {_pr(L, rng, t)}."


def _fr_t5(L, rng, t):
    s, v, o = _fr_svo(L, rng, t)
    s2, v2, o2 = _fr_svo(L, rng, t)
    while s2 == s or o2 == o:
        s2, v2, o2 = _fr_svo(L, rng, t)
    que = "qu'" if s2[0] in "aeéiouh" else "que "
    return f"{cap(s)} a {v[0]} {o}, tandis {que}{s2} a {v2[0]} {o2}."


def _fr_t6(L, rng, t):
    s, v, o = _fr_svo(L, rng, t)
    return f"{L.pick(rng, L.connectors)} {s} a {v[0]} {o} {L.pick(rng, L.places)}."


def _fr_t7(L, rng, t):
    s, v, o = _fr_svo(L, rng, t)
    head = L.pick(rng, ["souhaite ", "prévoit de ", "compte ", "espère "])
    if head.endswith("de ") and v[1][0] in "aeéioeuh":
        head = head[:-3] + "d'"  # élision: prévoit d'approuver
    return f"{cap(s)} {head}{v[1]} {o} {L.pick(rng, L.future)}."


def _fr_t8(L, rng, t):
    s, v, o = _fr_svo(L, rng, t)
    return f"{_pr(L, rng, t)}, a expliqué que {s} avait {v[0]} {o} {L.pick(rng, L.times)}."


FR = Lang(
    code="fr", sep=" ",
    subjects={
        "city": ["le conseil municipal", "la maire", "la préfecture", "la commission des transports", "le service de l'urbanisme",
                 "l'opposition municipale", "le conseil de quartier", "la région"],
        "science": ["l'équipe de recherche", "un groupe de biologistes", "le laboratoire de l'université", "l'agence spatiale",
                    "une jeune physicienne", "le muséum d'histoire naturelle", "la faculté de médecine", "un institut de recherche"],
        "economy": ["la banque centrale", "la chambre de commerce", "le premier employeur de la région", "le ministère des Finances",
                    "une chaîne de boulangeries", "le port autonome", "l'institut de la statistique", "le syndicat"],
        "culture": ["le théâtre municipal", "la médiathèque", "le festival de cinéma", "l'orchestre régional", "une petite maison d'édition",
                    "le musée des beaux-arts", "le salon du livre", "une chorale du quartier"],
    },
    verbs={
        "city": [("approuvé", "approuver"), ("présenté", "présenter"), ("critiqué", "critiquer"), ("annoncé", "annoncer"),
                 ("reporté", "reporter"), ("modifié", "modifier"), ("rejeté", "rejeter")],
        "science": [("publié", "publier"), ("présenté", "présenter"), ("testé", "tester"), ("confirmé", "confirmer"),
                    ("décrit", "décrire"), ("mesuré", "mesurer"), ("étudié", "étudier")],
        "economy": [("publié", "publier"), ("annoncé", "annoncer"), ("relevé", "relever"), ("réduit", "réduire"),
                    ("défendu", "défendre"), ("révisé", "réviser"), ("renforcé", "renforcer")],
        "culture": [("inauguré", "inaugurer"), ("présenté", "présenter"), ("annoncé", "annoncer"), ("annulé", "annuler"),
                    ("restauré", "restaurer"), ("célébré", "célébrer"), ("lancé", "lancer")],
    },
    objects={
        "city": ["un nouveau budget pour l'année prochaine", "le projet d'un deuxième pont sur le fleuve", "la rénovation de la gare centrale",
                 "de nouvelles règles de stationnement dans le centre historique", "un programme de logements abordables",
                 "le prolongement de la ligne de tramway", "le plan pour de nouvelles pistes cyclables", "le projet de la nouvelle école"],
        "science": ["une étude sur la migration des oiseaux", "de nouvelles données sur la montée des eaux",
                    "une méthode moins chère pour purifier l'eau", "les résultats d'une étude de terrain de dix ans",
                    "un modèle de l'univers primitif", "un vaccin contre un virus courant", "un capteur qui mesure la pollution de l'air",
                    "la première carte des récifs profonds"],
        "economy": ["ses prévisions de croissance", "le taux directeur d'un quart de point", "l'embauche de deux cents salariés",
                    "de nouveaux chiffres sur le chômage", "le prix de ses produits", "un accord avec son principal fournisseur",
                    "les salaires de ses employés", "ses investissements dans les énergies renouvelables"],
        "culture": ["une nouvelle exposition sur la peinture moderne", "sa programmation pour la saison d'automne",
                    "un festival de courts métrages", "la collection de cartes anciennes", "le lauréat du prix de poésie",
                    "une série de concerts gratuits", "l'orgue restauré de la vieille église", "une pièce sur l'histoire du port"],
    },
    facts={
        "city": ["La décision devrait concerner plusieurs milliers d'habitants.", "Plusieurs rues seront fermées pendant les travaux.",
                 "Le projet est discuté depuis plus de dix ans.", "De nombreux habitants du quartier ont salué la nouvelle.",
                 "Un vote définitif est prévu lors de la prochaine séance du conseil."],
        "science": ["Les résultats ont été publiés dans une revue scientifique.",
                    "D'autres chercheurs estiment que de nouveaux travaux sont nécessaires.",
                    "L'expérience a duré près de trois ans.", "Les données seront mises à la disposition d'autres équipes.",
                    "Le projet est financé par un programme national de recherche."],
        "economy": ["Les analystes attendaient un changement plus modeste.",
                    "L'entreprise emploie plus de quatre mille personnes dans la région.",
                    "Les prix à la consommation ont augmenté régulièrement depuis un an.",
                    "Les petites entreprises disent avoir du mal à faire face à la hausse des coûts.",
                    "Les chiffres seront de nouveau révisés au prochain trimestre."],
        "culture": ["Les billets sont en vente à la billetterie et sur internet.", "L'exposition restera ouverte jusqu'à la fin de l'année.",
                    "L'entrée est gratuite pour les enfants et les étudiants.", "Le bâtiment a été entièrement rénové l'été dernier.",
                    "L'événement a attiré des visiteurs de toute la France."],
    },
    times=["mardi", "la semaine dernière", "au début du mois", "lundi soir", "en mars", "après des mois de débat", "ce printemps",
           "vendredi soir", "ce week-end", "jeudi matin", "à la fin de l'année dernière", "hier"],
    future=["d'ici la fin de l'année", "au printemps prochain", "dans les deux ans", "avant l'été", "dans les prochains mois",
            "d'ici l'automne prochain"],
    places=["lors d'une conférence de presse", "au cours d'une réunion publique", "à l'hôtel de ville", "dans un bref communiqué",
            "devant les habitants du quartier", "dans un entretien à la radio locale", "lors de l'assemblée annuelle"],
    sources=["un communiqué publié sur son site", "des sources proches du dossier", "un rapport publié jeudi", "la presse locale",
             "les chiffres de l'institut de la statistique", "un porte-parole", "des documents consultés par notre journal"],
    connectors=["Par ailleurs,", "Cependant,", "En outre,", "Dans le même temps,", "Pourtant,", "Auparavant,", "Pour l'instant,"],
    quotes=["C'est une étape importante pour toute la région", "Il nous reste encore beaucoup de travail",
            "Personne ne s'attendait à une évolution aussi rapide", "La décision n'a pas été facile, mais elle était nécessaire",
            "Nous allons continuer à écouter tous les acteurs concernés", "Il est trop tôt pour tirer des conclusions",
            "Les habitants attendent cela depuis longtemps", "Nous sommes fiers du travail de toute l'équipe",
            "Il reste encore beaucoup de questions"],
    first=[("Claire", "f"), ("Julien", "m"), ("Camille", "f"), ("Nicolas", "m"), ("Sophie", "f"), ("Antoine", "m"), ("Élodie", "f"),
           ("Mathieu", "m"), ("Céline", "f"), ("François", "m"), ("Manon", "f"), ("Olivier", "m")],
    last=["Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Laurent", "Girard", "Bonnet", "Rousseau", "Fontaine", "Mercier", "Chevalier"],
    roles={
        "city": [("porte-parole de la mairie", "porte-parole de la mairie"), ("membre de la commission d'urbanisme",) * 2,
                 ("habitant du quartier", "habitante du quartier"), ("adjoint au maire", "adjointe au maire")],
        "science": [("auteur principal de l'étude", "auteure principale de l'étude"), ("professeur de biologie",) * 2,
                    ("chercheur à l'université", "chercheuse à l'université"), ("expert indépendant", "experte indépendante")],
        "economy": [("économiste dans une banque régionale",) * 2, ("président de la chambre de commerce", "présidente de la chambre de commerce"),
                    ("délégué syndical", "déléguée syndicale"), ("directeur général", "directrice générale")],
        "culture": [("directeur du musée", "directrice du musée"), ("organisateur du festival", "organisatrice du festival"),
                    ("romancier de la ville", "romancière de la ville"), ("chef de l'orchestre", "cheffe de l'orchestre")],
    },
    numeric=["Le coût est estimé à {m} millions d'euros.", "Environ {k} personnes ont participé, selon les organisateurs.",
             "Ce chiffre a augmenté de {n} % depuis {y}.", "Seuls {n} % des personnes interrogées se disent satisfaites.",
             "Le dernier changement comparable remonte à {y}.", "Quelque {k} foyers sont concernés."],
    comments=["Très bon article, merci pour ce résumé clair.", "J'habite à côté et ce problème dure depuis des années.",
              "Quelqu'un sait quand aura lieu la réunion ?", "Enfin une bonne nouvelle pour notre ville."],
    table_head=["Année", "Montant", "Évolution"],
    boiler=Boilerplate(
        nav=["Accueil", "Actualités", "Politique", "Économie", "Sciences", "Culture", "Opinions", "Contact"],
        cookie="Nous utilisons des cookies pour améliorer votre expérience. En poursuivant votre navigation, vous acceptez leur utilisation.",
        accept="Tout accepter", search="Rechercher", home="Accueil", related="À lire aussi", share="Partager cet article",
        comments="Commentaires des lecteurs", newsletter="Inscrivez-vous à notre lettre d'information quotidienne.",
        footer_links=["Mentions légales", "Politique de confidentialité", "Conditions d'utilisation", "Publicité", "Nous contacter"],
        rights="Tous droits réservés.", byline="Par",
        topic_names={"city": "Vie locale", "science": "Sciences", "economy": "Économie", "culture": "Culture"},
    ),
    sites=[("Le Courrier du Fleuve", "courrier-du-fleuve.fr"), ("La Gazette des Alpes", "gazette-des-alpes.fr"),
           ("Ouest Matin", "ouest-matin.fr")],
    subheads=["Le contexte", "La suite", "Les réactions", "Un long débat", "Les chiffres", "Des questions en suspens"],
    templates=[_fr_t1, _fr_t2, _fr_t3, _fr_t4, _fr_t5, _fr_t6, _fr_t7, _fr_t8],
)


# ===========================================================================
# Spanish: pretérito indefinido

def _es_svo(L, rng, t):
    return L.pick(rng, L.subjects[t]), L.pick(rng, L.verbs[t]), L.pick(rng, L.objects[t])


def _es_t1(L, rng, t):
    s, v, o = _es_svo(L, rng, t)
    return f"{cap(s)} {v[0]} {o} {L.pick(rng, L.times)}."


def _es_t2(L, rng, t):
    s, v, o = _es_svo(L, rng, t)
    return f"{cap(L.pick(rng, L.times))}, {s} {v[0]} {o} {L.pick(rng, L.places)}."


def _es_t3(L, rng, t):
    s, v, o = _es_svo(L, rng, t)
    return f"Según {L.pick(rng, L.sources)}, {s} {v[0]} {o}."


def _es_t4(L, rng, t):
    return f"\u00ab{L.pick(rng, L.quotes)}\u00bb, afirmó {_pr(L, rng, t)}."


def _es_t5(L, rng, t):
    s, v, o = _es_svo(L, rng, t)
    s2, v2, o2 = _es_svo(L, rng, t)
    while s2 == s or o2 == o:
        s2, v2, o2 = _es_svo(L, rng, t)
    return f"{cap(s)} {v[0]} {o}, mientras que {s2} {v2[0]} {o2}."


def _es_t6(L, rng, t):
    s, v, o = _es_svo(L, rng, t)
    return f"{L.pick(rng, L.connectors)} {s} {v[0]} {o} {L.pick(rng, L.places)}."


def _es_t7(L, rng, t):
    s, v, o = _es_svo(L, rng, t)
    return f"{cap(s)} {L.pick(rng, ['prevé', 'quiere', 'espera', 'pretende'])} {v[1]} {o} {L.pick(rng, L.future)}."


def _es_t8(L, rng, t):
    s, v, o = _es_svo(L, rng, t)
    return f"{_pr(L, rng, t)}, explicó que {s} {v[0]} {o} {L.pick(rng, L.times)}."


ES = Lang(
    code="es", sep=" ",
    subjects={
        "city": ["el ayuntamiento", "la alcaldesa", "el gobierno regional", "la comisión de transporte", "el departamento de urbanismo",
                 "la oposición municipal", "la asociación de vecinos", "la diputación provincial"],
        "science": ["el equipo de investigación", "un grupo de biólogos", "el laboratorio de la universidad", "la agencia espacial",
                    "una joven física", "el museo de ciencias naturales", "la facultad de medicina", "un centro de investigación"],
        "economy": ["el banco central", "la cámara de comercio", "la mayor empresa de la región", "el ministerio de Hacienda",
                    "una cadena de panaderías", "la autoridad portuaria", "el instituto de estadística", "el sindicato"],
        "culture": ["el teatro municipal", "la biblioteca pública", "el festival de cine", "la orquesta regional", "una pequeña editorial",
                    "el museo de bellas artes", "la feria del libro", "un coro del barrio antiguo"],
    },
    verbs={
        "city": [("aprobó", "aprobar"), ("presentó", "presentar"), ("criticó", "criticar"), ("anunció", "anunciar"),
                 ("aplazó", "aplazar"), ("modificó", "modificar"), ("rechazó", "rechazar")],
        "science": [("publicó", "publicar"), ("presentó", "presentar"), ("probó", "probar"), ("confirmó", "confirmar"),
                    ("describió", "describir"), ("midió", "medir"), ("analizó", "analizar")],
        "economy": [("publicó", "publicar"), ("anunció", "anunciar"), ("subió", "subir"), ("recortó", "recortar"),
                    ("defendió", "defender"), ("revisó", "revisar"), ("amplió", "ampliar")],
        "culture": [("inauguró", "inaugurar"), ("presentó", "presentar"), ("anunció", "anunciar"), ("canceló", "cancelar"),
                    ("restauró", "restaurar"), ("celebró", "celebrar"), ("lanzó", "lanzar")],
    },
    objects={
        "city": ["un nuevo presupuesto para el próximo año", "el proyecto de un segundo puente sobre el río", "la reforma de la estación central",
                 "nuevas normas de aparcamiento en el casco antiguo", "un programa de vivienda asequible",
                 "la ampliación de la línea de tranvía", "el plan de nuevos carriles bici", "el diseño del nuevo colegio"],
        "science": ["un estudio sobre la migración de las aves", "nuevos datos sobre la subida del nivel del mar",
                    "un método más barato para depurar el agua", "los resultados de un estudio de campo de diez años",
                    "un modelo del universo primitivo", "una vacuna contra un virus común", "un sensor que mide la contaminación del aire",
                    "el primer mapa de los arrecifes profundos"],
        "economy": ["su previsión de crecimiento", "los tipos de interés un cuarto de punto", "la contratación de doscientos trabajadores",
                    "nuevas cifras de desempleo", "el precio de sus productos", "un acuerdo con su principal proveedor",
                    "los salarios de sus empleados", "su inversión en energías renovables"],
        "culture": ["una nueva exposición sobre pintura moderna", "su programación para la temporada de otoño",
                    "un festival de cortometrajes", "la colección de mapas antiguos", "el ganador del premio de poesía",
                    "un ciclo de conciertos gratuitos", "el órgano restaurado de la vieja iglesia", "una obra sobre la historia del puerto"],
    },
    facts={
        "city": ["La decisión afectará a varios miles de vecinos.", "Varias calles permanecerán cortadas durante las obras.",
                 "El proyecto lleva más de una década en discusión.", "Muchos vecinos del barrio recibieron la noticia con alegría.",
                 "La votación definitiva está prevista para el próximo pleno."],
        "science": ["Los resultados se publicaron en una revista científica.",
                    "Otros investigadores creen que hace falta más trabajo para confirmarlos.",
                    "El experimento duró casi tres años.", "Los datos estarán a disposición de otros equipos.",
                    "El proyecto recibió financiación de un programa nacional de investigación."],
        "economy": ["Los analistas esperaban un cambio menor.", "La empresa da trabajo a más de cuatro mil personas en la región.",
                    "Los precios al consumo han subido de forma constante durante el último año.",
                    "Los pequeños comercios aseguran que les cuesta afrontar la subida de los costes.",
                    "Las cifras se revisarán de nuevo el próximo trimestre."],
        "culture": ["Las entradas están a la venta en taquilla y en internet.", "La exposición podrá visitarse hasta final de año.",
                    "La entrada es gratuita para niños y estudiantes.", "El edificio fue renovado por completo el verano pasado.",
                    "El evento atrajo a visitantes de todo el país."],
    },
    times=["el martes", "la semana pasada", "a principios de mes", "el lunes por la tarde", "en marzo", "tras meses de debate",
           "esta primavera", "el viernes por la noche", "durante el fin de semana", "el jueves por la mañana",
           "a finales del año pasado", "ayer"],
    future=["antes de que acabe el año", "la próxima primavera", "en un plazo de dos años", "antes del verano", "en los próximos meses",
            "para el próximo otoño"],
    places=["en una rueda de prensa", "durante una audiencia pública", "en el salón de plenos", "en un breve comunicado",
            "ante los vecinos del barrio", "en una entrevista con la radio local", "en la asamblea anual"],
    sources=["un comunicado publicado en su web", "fuentes cercanas al caso", "un informe publicado el jueves", "la prensa local",
             "los datos del instituto de estadística", "un portavoz", "documentos a los que ha tenido acceso este periódico"],
    connectors=["Sin embargo,", "Además,", "Mientras tanto,", "Al mismo tiempo,", "Por otra parte,", "Anteriormente,", "Por ahora,"],
    quotes=["Es un paso importante para toda la región", "Todavía nos queda mucho trabajo por delante",
            "Nadie esperaba que las cifras cambiaran tan rápido", "La decisión no fue fácil, pero era necesaria",
            "Seguiremos escuchando a todas las partes", "Es demasiado pronto para sacar conclusiones",
            "Los vecinos llevan mucho tiempo esperando esto", "Estamos orgullosos del trabajo de todo el equipo",
            "Todavía hay muchas preguntas abiertas"],
    first=[("Lucía", "f"), ("Javier", "m"), ("Carmen", "f"), ("Alejandro", "m"), ("Marta", "f"), ("Pablo", "m"), ("Elena", "f"),
           ("Sergio", "m"), ("Isabel", "f"), ("Andrés", "m"), ("Paula", "f"), ("Miguel", "m")],
    last=["García", "Fernández", "López", "Martínez", "Sánchez", "Romero", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Molina"],
    roles={
        "city": [("portavoz del ayuntamiento",) * 2, ("miembro de la comisión de urbanismo",) * 2, ("vecino del barrio", "vecina del barrio"),
                 ("teniente de alcalde", "teniente de alcalde")],
        "science": [("autor principal del estudio", "autora principal del estudio"), ("profesor de biología", "profesora de biología"),
                    ("investigador de la universidad", "investigadora de la universidad"), ("experto independiente", "experta independiente")],
        "economy": [("economista de un banco regional",) * 2, ("presidente de la cámara de comercio", "presidenta de la cámara de comercio"),
                    ("representante sindical",) * 2, ("consejero delegado", "consejera delegada")],
        "culture": [("director del museo", "directora del museo"), ("organizador del festival", "organizadora del festival"),
                    ("escritor de la ciudad", "escritora de la ciudad"), ("director de la orquesta", "directora de la orquesta")],
    },
    numeric=["El coste se estima en {m} millones de euros.", "Unas {k} personas participaron, según los organizadores.",
             "La cifra ha aumentado un {n} % desde {y}.", "Solo el {n} % de los encuestados se mostró satisfecho.",
             "El último cambio comparable se produjo en {y}.", "Cerca de {k} hogares están afectados."],
    comments=["Muy buen artículo, gracias por el resumen.", "Vivo cerca y este problema viene de hace años.",
              "¿Alguien sabe cuándo será la reunión?", "Por fin una buena noticia para nuestra ciudad."],
    table_head=["Año", "Importe", "Variación"],
    boiler=Boilerplate(
        nav=["Portada", "Noticias", "Política", "Economía", "Ciencia", "Cultura", "Opinión", "Contacto"],
        cookie="Utilizamos cookies para mejorar su experiencia. Si continúa navegando, acepta su uso.",
        accept="Aceptar todas", search="Buscar", home="Portada", related="Noticias relacionadas", share="Compartir este artículo",
        comments="Comentarios de los lectores", newsletter="Suscríbase a nuestro boletín para recibir las últimas noticias.",
        footer_links=["Aviso legal", "Política de privacidad", "Condiciones de uso", "Publicidad", "Contacto con la redacción"],
        rights="Todos los derechos reservados.", byline="Por",
        topic_names={"city": "Local", "science": "Ciencia", "economy": "Economía", "culture": "Cultura"},
    ),
    sites=[("Diario del Valle", "diariodelvalle.es"), ("La Voz del Puerto", "lavozdelpuerto.es"), ("Crónica Sur", "cronicasur.es")],
    subheads=["Antecedentes", "Próximos pasos", "Reacciones", "Un largo debate", "Las cifras", "Preguntas abiertas"],
    templates=[_es_t1, _es_t2, _es_t3, _es_t4, _es_t5, _es_t6, _es_t7, _es_t8],
)


# ===========================================================================
# Russian: past tense agrees with the subject's gender (m/f/n/p)

_RU_PAST = {"m": "л", "f": "ла", "n": "ло", "p": "ли"}


def _ru_past(stem: str, g: str) -> str:
    return stem + _RU_PAST[g]


def _ru_svo(L, rng, t):
    return L.pick(rng, L.subjects[t]), L.pick(rng, L.verbs[t]), L.pick(rng, L.objects[t])


def _ru_t1(L, rng, t):
    (s, g), v, o = _ru_svo(L, rng, t)
    return f"{cap(s)} {_ru_past(v[0], g)} {o} {L.pick(rng, L.times)}."


def _ru_t2(L, rng, t):
    (s, g), v, o = _ru_svo(L, rng, t)
    return f"{cap(L.pick(rng, L.times))} {s} {L.pick(rng, L.places)} {_ru_past(v[0], g)} {o}."


def _ru_t3(L, rng, t):
    (s, g), v, o = _ru_svo(L, rng, t)
    return f"По данным {L.pick(rng, L.sources)}, {s} {_ru_past(v[0], g)} {o}."


def _ru_t4(L, rng, t):
    name, role, g = L.person_role(rng, t)
    said = "заявила" if g == "f" else "заявил"
    return f"\u00ab{L.pick(rng, L.quotes)}\u00bb, \u2014 {said} {name}, {role}."


def _ru_t5(L, rng, t):
    (s, g), v, o = _ru_svo(L, rng, t)
    (s2, g2), v2, o2 = _ru_svo(L, rng, t)
    while s2 == s or o2 == o:
        (s2, g2), v2, o2 = _ru_svo(L, rng, t)
    return f"{cap(s)} {_ru_past(v[0], g)} {o}, а {s2} {_ru_past(v2[0], g2)} {o2}."


def _ru_t6(L, rng, t):
    (s, g), v, o = _ru_svo(L, rng, t)
    return f"{L.pick(rng, L.connectors)} {s} {_ru_past(v[0], g)} {o} {L.pick(rng, L.places)}."


def _ru_t7(L, rng, t):
    (s, g), v, o = _ru_svo(L, rng, t)
    plan = rng.choice([("планирует", "планируют"), ("намерен" if g == "m" else "намерена" if g == "f" else "намерено", "намерены"),
                       ("собирается", "собираются")])
    return f"{cap(s)} {plan[1] if g == 'p' else plan[0]} {v[1]} {o} {L.pick(rng, L.future)}."


def _ru_t8(L, rng, t):
    (s, g), v, o = _ru_svo(L, rng, t)
    return f"Как сообщили {L.pick(rng, ['в пресс-службе', 'в мэрии', 'в министерстве', 'организаторы', 'местные журналисты'])}, " \
           f"{s} {_ru_past(v[0], g)} {o} {L.pick(rng, L.times)}."


RU = Lang(
    code="ru", sep=" ",
    subjects={
        "city": [("городской совет", "m"), ("мэрия", "f"), ("администрация города", "f"), ("комитет по транспорту", "m"),
                 ("правительство области", "n"), ("депутаты городской думы", "p"), ("жители района", "p"), ("губернатор", "m")],
        "science": [("группа исследователей", "f"), ("университетская лаборатория", "f"), ("космическое агентство", "n"),
                    ("молодой физик", "m"), ("команда биологов", "f"), ("научный институт", "m"), ("медицинский факультет", "m"),
                    ("учёные из Новосибирска", "p")],
        "economy": [("центральный банк", "m"), ("торговая палата", "f"), ("крупнейший работодатель региона", "m"),
                    ("министерство финансов", "n"), ("сеть пекарен", "f"), ("управление порта", "n"), ("служба статистики", "f"),
                    ("профсоюз", "m")],
        "culture": [("городской театр", "m"), ("центральная библиотека", "f"), ("кинофестиваль", "m"), ("областной оркестр", "m"),
                    ("небольшое издательство", "n"), ("художественный музей", "m"), ("организаторы книжной ярмарки", "p"),
                    ("местный хор", "m")],
    },
    verbs={
        "city": [("утверди", "утвердить"), ("представи", "представить"), ("раскритикова", "раскритиковать"),
                 ("обсуди", "обсудить"), ("отложи", "отложить"), ("пересмотре", "пересмотреть"), ("отклони", "отклонить")],
        "science": [("опубликова", "опубликовать"), ("представи", "представить"), ("испыта", "испытать"),
                    ("подтверди", "подтвердить"), ("описа", "описать"), ("измери", "измерить"), ("изучи", "изучить")],
        "economy": [("опубликова", "опубликовать"), ("повыси", "повысить"), ("снизи", "снизить"), ("пересмотре", "пересмотреть"),
                    ("защити", "защитить"), ("расшири", "расширить"), ("поддержа", "поддержать")],
        "culture": [("откры", "открыть"), ("представи", "представить"), ("отмени", "отменить"), ("восстанови", "восстановить"),
                    ("подготови", "подготовить"), ("запусти", "запустить"), ("показа", "показать")],
    },
    objects={
        "city": ["новый бюджет на следующий год", "проект второго моста через реку", "план реконструкции центрального вокзала",
                 "новые правила парковки в историческом центре", "программу строительства доступного жилья",
                 "продление трамвайной линии", "план создания велосипедных дорожек", "проект новой школы"],
        "science": ["исследование миграции птиц", "новые данные о подъёме уровня моря", "дешёвый способ очистки воды",
                    "результаты десятилетнего полевого исследования", "модель ранней Вселенной", "вакцину против распространённого вируса",
                    "датчик для измерения загрязнения воздуха", "первую карту глубоководных рифов"],
        "economy": ["прогноз экономического роста", "ключевую ставку на четверть пункта", "план найма двухсот сотрудников",
                    "новые данные о безработице", "цены на свою продукцию", "соглашение с главным поставщиком",
                    "зарплаты своих сотрудников", "инвестиции в возобновляемую энергетику"],
        "culture": ["новую выставку современной живописи", "программу осеннего сезона", "фестиваль короткометражного кино",
                    "коллекцию старинных карт", "цикл бесплатных концертов", "старинный орган в соборе",
                    "спектакль об истории порта", "встречу с молодым писателем"],
    },
    facts={
        "city": ["Решение затронет несколько тысяч жителей.", "На время работ несколько улиц будут перекрыты.",
                 "Проект обсуждается уже больше десяти лет.", "Многие жители района с радостью встретили эту новость.",
                 "Окончательное голосование запланировано на следующее заседание."],
        "science": ["Результаты опубликованы в научном журнале.", "Другие учёные считают, что нужны дополнительные исследования.",
                    "Эксперимент продолжался почти три года.", "Данные будут доступны другим исследователям.",
                    "Проект финансируется из средств национальной научной программы."],
        "economy": ["Аналитики ожидали менее значительных изменений.", "На предприятии работают более четырёх тысяч человек.",
                    "Потребительские цены в течение года постоянно росли.", "Малый бизнес жалуется на рост расходов.",
                    "В следующем квартале данные будут уточнены."],
        "culture": ["Билеты можно купить в кассе и на сайте.", "Выставка продлится до конца года.",
                    "Для детей и студентов вход бесплатный.", "Прошлым летом здание было полностью отреставрировано.",
                    "Мероприятие привлекло гостей со всей страны."],
    },
    times=["во вторник", "на прошлой неделе", "в начале месяца", "в понедельник вечером", "в марте", "после долгих споров",
           "этой весной", "в пятницу", "в выходные", "в четверг утром", "в конце прошлого года", "вчера"],
    future=["до конца года", "следующей весной", "в течение двух лет", "до начала лета", "в ближайшие месяцы", "к следующей осени"],
    places=["на пресс-конференции", "на публичных слушаниях", "в здании мэрии", "в коротком заявлении", "на встрече с жителями",
            "в интервью местному радио", "на ежегодном собрании"],
    sources=["местных СМИ", "пресс-службы", "областного статистического управления", "источников, знакомых с ситуацией",
             "опубликованного в четверг доклада", "организаторов"],
    connectors=["Кроме того,", "Однако", "Тем временем", "При этом", "В то же время", "Ранее", "Между тем"],
    quotes=["Это важный шаг для всего региона", "Нам предстоит ещё много работы", "Никто не ожидал, что цифры изменятся так быстро",
            "Решение было непростым, но необходимым", "Мы продолжим прислушиваться ко всем сторонам",
            "Делать выводы пока рано", "Жители давно ждали этого", "Мы гордимся работой всей команды", "Остаётся много вопросов"],
    first=[("Анна", "f"), ("Дмитрий", "m"), ("Елена", "f"), ("Сергей", "m"), ("Ольга", "f"), ("Андрей", "m"), ("Мария", "f"),
           ("Алексей", "m"), ("Наталья", "f"), ("Игорь", "m")],
    last=["Иванов", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Новиков", "Морозов", "Волков", "Павлов"],
    roles={
        "city": ["представитель мэрии", "член комиссии по градостроительству", "житель района", "заместитель мэра"],
        "science": ["ведущий автор исследования", "профессор биологии", "научный сотрудник университета", "независимый эксперт"],
        "economy": ["экономист регионального банка", "глава торговой палаты", "представитель профсоюза", "генеральный директор"],
        "culture": ["директор музея", "организатор фестиваля", "местный писатель", "дирижёр оркестра"],
    },
    numeric=["Стоимость работ оценивается в {m} млн рублей.", "По словам организаторов, в мероприятии приняли участие около {k} человек.",
             "С {y} года этот показатель вырос на {n}%.", "Лишь {n}% опрошенных довольны результатом.",
             "Последнее сопоставимое изменение произошло в {y} году.", "Изменения затронут около {k} семей."],
    comments=["Хорошая статья, спасибо за понятный обзор.", "Живу рядом, эта проблема тянется уже много лет.",
              "Кто-нибудь знает, когда будет собрание?", "Наконец-то хорошая новость для нашего города."],
    table_head=["Год", "Сумма", "Изменение"],
    boiler=Boilerplate(
        nav=["Главная", "Новости", "Политика", "Экономика", "Наука", "Культура", "Мнения", "Контакты"],
        cookie="Мы используем файлы cookie, чтобы сделать сайт удобнее. Продолжая пользоваться сайтом, вы соглашаетесь с этим.",
        accept="Принять все", search="Поиск по сайту", home="Главная", related="Читайте также", share="Поделиться",
        comments="Комментарии читателей", newsletter="Подпишитесь на нашу рассылку, чтобы не пропустить главное.",
        footer_links=["О редакции", "Политика конфиденциальности", "Условия использования", "Реклама", "Связаться с редакцией"],
        rights="Все права защищены.", byline="Автор:",
        topic_names={"city": "Город", "science": "Наука", "economy": "Экономика", "culture": "Культура"},
    ),
    sites=[("Вечерний Приволжск", "vecherniy-privolzhsk.ru"), ("Северные вести", "severnye-vesti.ru"), ("Городской курьер", "gorkurier.ru")],
    subheads=["Предыстория", "Что дальше", "Реакция", "Долгие споры", "Цифры", "Открытые вопросы"],
    templates=[_ru_t1, _ru_t2, _ru_t3, _ru_t4, _ru_t5, _ru_t6, _ru_t7, _ru_t8],
)


# ===========================================================================
# Chinese: no spaces; 了 marks the completed action

def _zh_svo(L, rng, t):
    return L.pick(rng, L.subjects[t]), L.pick(rng, L.verbs[t]), L.pick(rng, L.objects[t])


def _zh_t1(L, rng, t):
    s, v, o = _zh_svo(L, rng, t)
    return f"{s}{L.pick(rng, L.times)}{v}了{o}。"


def _zh_t2(L, rng, t):
    s, v, o = _zh_svo(L, rng, t)
    return f"{L.pick(rng, L.times)}，{s}{L.pick(rng, L.places)}{v}了{o}。"


def _zh_t3(L, rng, t):
    s, v, o = _zh_svo(L, rng, t)
    return f"据{L.pick(rng, L.sources)}，{s}{v}了{o}。"


def _zh_t4(L, rng, t):
    return f"{_pr(L, rng, t, zh=True)}表示：\u201c{L.pick(rng, L.quotes)}。\u201d"


def _zh_t5(L, rng, t):
    s, v, o = _zh_svo(L, rng, t)
    s2, v2, o2 = _zh_svo(L, rng, t)
    while s2 == s or o2 == o:
        s2, v2, o2 = _zh_svo(L, rng, t)
    return f"{s}{v}了{o}，{s2}则{v2}了{o2}。"


def _zh_t6(L, rng, t):
    s, v, o = _zh_svo(L, rng, t)
    return f"{L.pick(rng, L.connectors)}，{s}{L.pick(rng, L.places)}{v}了{o}。"


def _zh_t7(L, rng, t):
    s, v, o = _zh_svo(L, rng, t)
    return f"{s}{L.pick(rng, ['计划', '打算', '希望', '准备'])}{L.pick(rng, L.future)}{v}{o}。"


def _zh_t8(L, rng, t):
    s, v, o = _zh_svo(L, rng, t)
    return f"{_pr(L, rng, t, zh=True)}介绍说，{s}{L.pick(rng, L.times)}{v}了{o}。"


ZH = Lang(
    code="zh", sep="",
    subjects={
        "city": ["市议会", "市政府", "市交通委员会", "规划部门", "住房管理局", "当地居民", "区政府", "省政府"],
        "science": ["研究团队", "一组生物学家", "大学实验室", "国家航天局", "一位年轻的物理学家", "自然历史博物馆", "医学院", "气候研究所"],
        "economy": ["中央银行", "商会", "当地最大的企业", "财政部", "一家连锁面包店", "港口管理局", "国家统计局", "工会"],
        "culture": ["市剧院", "公共图书馆", "电影节组委会", "地方交响乐团", "一家小出版社", "美术馆", "书展主办方", "社区合唱团"],
    },
    verbs={
        "city": ["通过", "公布", "讨论", "批评", "推迟", "修改", "否决"],
        "science": ["发表", "公布", "测试", "证实", "描述", "测量", "研究"],
        "economy": ["发布", "宣布", "上调", "下调", "调整", "扩大", "公布"],
        "culture": ["推出", "举办", "公布", "取消", "修复", "启动", "展出"],
    },
    objects={
        "city": ["明年的财政预算", "第二座跨河大桥的方案", "火车站改造项目", "老城区停车新规定", "保障性住房计划", "有轨电车延长线",
                 "新的自行车道规划", "新学校的设计方案"],
        "science": ["一项关于候鸟迁徙的研究", "海平面上升的新数据", "一种成本更低的净水方法", "一项为期十年的野外研究成果",
                    "早期宇宙的模型", "一种针对常见病毒的疫苗", "一种监测空气污染的传感器", "第一张深海珊瑚礁地图"],
        "economy": ["经济增长预测", "基准利率", "招聘两百名员工的计划", "最新的失业数据", "产品价格", "与主要供应商的合作协议",
                    "员工工资标准", "可再生能源投资计划"],
        "culture": ["一个现代绘画展览", "秋季演出季的节目单", "短片电影节", "古地图收藏", "年度诗歌奖的获奖名单", "一系列免费音乐会",
                    "老教堂的管风琴", "一部关于港口历史的话剧"],
    },
    facts={
        "city": ["这一决定预计将影响数千名居民。", "施工期间，附近几条街道将临时封闭。", "这个项目已经讨论了十多年。",
                 "许多居民对这一消息表示欢迎。", "最终表决将在下次会议上进行。"],
        "science": ["相关成果已经发表在学术期刊上。", "其他学者认为还需要更多研究来证实这一结果。", "这项实验历时将近三年。",
                    "研究数据将向其他科研人员开放。", "该项目得到了国家科研计划的资助。"],
        "economy": ["分析人士此前预计变化幅度会更小。", "该公司在当地雇用了四千多名员工。", "过去一年，消费价格持续上涨。",
                    "不少小企业表示，成本上升让经营更加困难。", "下个季度的数据还将再次修订。"],
        "culture": ["门票可以在售票处和网上购买。", "展览将持续到今年年底。", "儿童和学生可以免费参观。", "这座建筑去年夏天完成了全面翻修。",
                    "活动吸引了来自全国各地的观众。"],
    },
    times=["周二", "上周", "本月初", "周一晚上", "三月份", "经过几个月的讨论后", "今年春天", "上周五", "周末", "周四上午", "去年年底", "昨天"],
    future=["在年底前", "明年春天", "在两年内", "在夏天到来之前", "在未来几个月内", "明年秋天"],
    places=["在新闻发布会上", "在公开听证会上", "在市政厅", "在一份简短声明中", "在与居民的座谈会上", "在接受当地电台采访时", "在年度会议上"],
    sources=["当地媒体报道", "官方网站发布的消息", "周四发布的一份报告", "统计部门的数据", "知情人士透露", "发言人介绍"],
    connectors=["此外", "与此同时", "不过", "另外", "因此", "此前", "目前"],
    quotes=["这是整个地区的重要一步", "我们还有很多工作要做", "没有人想到数字会变化得这么快", "这个决定并不容易，但是很有必要",
            "我们会继续听取各方的意见", "现在下结论还为时过早", "这里的居民已经等了很久", "我们为整个团队的工作感到骄傲", "还有很多问题需要回答"],
    first=["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"],
    last=["晓明", "丽华", "建国", "静", "伟", "芳", "志强", "婷", "海涛", "雪梅"],
    roles={
        "city": ["市政府发言人", "规划委员会委员", "当地居民", "副市长"],
        "science": ["研究的第一作者", "生物学教授", "大学研究员", "独立专家"],
        "economy": ["一家地方银行的经济学家", "商会会长", "工会代表", "公司总经理"],
        "culture": ["博物馆馆长", "电影节负责人", "本地作家", "乐团指挥"],
    },
    numeric=["该项目的费用估计为{m}亿元。", "据主办方介绍，约有{k}人参加了活动。", "自{y}年以来，这一数字增长了{n}%。",
             "只有{n}%的受访者对结果表示满意。", "上一次类似的调整发生在{y}年。", "约有{k}户家庭受到影响。"],
    comments=["写得很好，谢谢总结。", "我就住在附近，这个问题已经存在很多年了。", "有人知道会议什么时候召开吗？", "终于有好消息了。"],
    table_head=["年份", "金额", "变化"],
    boiler=Boilerplate(
        nav=["首页", "新闻", "政治", "财经", "科技", "文化", "评论", "联系我们"],
        cookie="本网站使用Cookie以改善您的浏览体验。继续浏览即表示您同意我们使用Cookie。",
        accept="全部接受", search="站内搜索", home="首页", related="相关阅读", share="分享到", comments="读者评论",
        newsletter="订阅我们的新闻简报，获取最新资讯。",
        footer_links=["关于我们", "隐私政策", "使用条款", "广告服务", "联系编辑部"],
        rights="版权所有。", byline="记者",
        topic_names={"city": "本地", "science": "科技", "economy": "财经", "culture": "文化"},
    ),
    sites=[("江城晚报", "jiangcheng-wanbao.cn"), ("南方都市新闻网", "nanfang-dushi.cn"), ("东海日报", "donghai-ribao.cn")],
    subheads=["背景", "下一步", "各方反应", "漫长的讨论", "数据", "悬而未决的问题"],
    templates=[_zh_t1, _zh_t2, _zh_t3, _zh_t4, _zh_t5, _zh_t6, _zh_t7, _zh_t8],
)


LANGS: dict[str, Lang] = {L.code: L for L in (EN, DE, FR, ES, RU, ZH)}
