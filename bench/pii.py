"""PII detection: precision and recall per type on planted PII in real pages, and docs/s per core.

    PYTHONPATH=. .venv/bin/python bench/pii.py [--pages 800] [--per-page 4] [--seed 1]

The labelled set: real extracted pages of ``../shared/data/warc/realpages`` (``bench/_pages_text``)
with sentences planted between their paragraphs. Each planted sentence carries one labelled item
in a realistic context ("For questions, write to ...", "IBAN: ..."): either PII of one type
(e-mail; phone numbers, international and national in the page's region as the stage reads it,
every one valid for libphonenumber; public IPv4/IPv6; Luhn-valid cards of the major issuers;
IBANs with correct checksums; SSNs under the SSA rules) or a look-alike (version strings,
ISBN-10/13, order and invoice numbers incl. Luhn-failing 16-digit ids, dates, prices, decimals,
private IPs, invalid IBANs/SSNs). A planted item counts as found when a span of its type
overlaps it; precision per type counts the spans of that type that fall on planted sentences
(a span on a look-alike or on another type's item is a false positive). Spans found in the
pages' own text are not labelled: they are counted per type and a sample is printed for audit.

Speed: the ``pii`` stage (mask on) on batches of 64, in this process; docs/s per core =
documents / CPU seconds of the stage calls, on the unmodified pages and on the planted set.
"""
from __future__ import annotations

import argparse
import ipaddress
import random
import string
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TYPES = ("email", "phone", "ip", "card", "iban", "ssn")
FIRST = "anna ben carla david emma felix grace hugo ines jonas kim lena marco nora oskar paula rui sofia tom".split()
LAST = "schmidt garcia martin rossi nowak silva dubois jensen muller brown novak costa weber lopez kowalski".split()
HOSTS = "gmail.com web.de outlook.fr example-shop.com uni-bonn.de mairie-lyon.fr kanzlei-meyer.de acme.co.uk".split()

PII_TEMPLATES = {
    "email": ["For questions, write to {x}.", "Kontakt: {x}", "Send your CV to {x} before Friday.",
              "Contact the author at {x} or via the form.", "Pour nous joindre : {x}"],
    "phone": ["Call us on {x} (Mon-Fri 9-17).", "Telefon: {x}", "Reservations: {x}.", "Tél. {x}",
              "For support, ring {x} or email us.", "Mobile {x}, Fax available on request."],
    "ip": ["The attack came from {x} according to the logs.", "Server address: {x}", "Blocked IP {x} for spam.",
           "Connect to {x} on port 22."],
    "card": ["Card number: {x}", "I paid with my card {x} and never got the goods.", "Kreditkarte {x}, gültig bis 08/27."],
    "iban": ["IBAN: {x}", "Please transfer the fee to {x} (reference: membership).", "Spendenkonto {x} bei der Sparkasse."],
    "ssn": ["SSN: {x}", "My social security number {x} was leaked.", "Applicant SSN {x}, DOB withheld."],
}
LOOK_TEMPLATES = {
    "version": ["Upgrade to version {x} now.", "Tested with build {x}.", "Firmware {x} fixes the bug.", "Requires v{x} or later."],
    "isbn": ["ISBN {x}", "Paperback, ISBN: {x}, 320 pages."],
    "order": ["Your order #{x} has shipped.", "Invoice no. {x} is attached.", "Tracking number {x}.",
              "Ticket {x} was closed.", "Customer ID {x}"],
    "date": ["Published {x}.", "Updated on {x} by the editors.", "Valid until {x}."],
    "price": ["Now only {x} incl. VAT.", "Price: {x}", "Total {x} (shipping free)."],
    "decimal": ["Latitude: {x}", "Population density {x} per km², area {x}."],
    "private_ip": ["Open the router at {x} in your browser.", "Default gateway {x}."],
    "invalid_id": ["Code {x} is not valid.", "Reference {x}"],
}


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def gen_email(r):
    name = r.choice(FIRST) + r.choice([".", "_", ""]) + r.choice(LAST) + r.choice(["", str(r.randint(1, 99))])
    return name + "@" + r.choice(HOSTS)


def gen_phone(r, region):
    import phonenumbers as pn
    regions = ["US", "GB", "DE", "FR", "ES", "IT", "NL"]
    reg = region if region in regions else r.choice(regions)
    ex = pn.example_number_for_type(reg, r.choice([pn.PhoneNumberType.FIXED_LINE, pn.PhoneNumberType.MOBILE]))
    nsn = str(ex.national_number)
    for _ in range(200):
        cand = nsn[:3] + "".join(r.choice(string.digits) for _ in nsn[3:])
        num = pn.parse("+" + str(ex.country_code) + cand, None)
        if pn.is_valid_number(num):
            break
    else:
        num = ex
    national = reg == region and r.random() < 0.5
    fmt = pn.PhoneNumberFormat.NATIONAL if national else pn.PhoneNumberFormat.INTERNATIONAL
    return pn.format_number(num, fmt)


def gen_ip(r):
    while True:
        if r.random() < 0.75:
            ip = ipaddress.IPv4Address(r.getrandbits(32))
        else:
            ip = ipaddress.IPv6Address((0x2A00 << 112) | r.getrandbits(112))
        if ip.is_global:
            return ip.compressed


def gen_card(r):
    kind = r.choice(["visa", "mc", "amex", "disc"])
    prefix, n = {"visa": ("4", 16), "mc": (str(r.randint(51, 55)), 16), "amex": (r.choice(["34", "37"]), 15),
                 "disc": ("6011", 16)}[kind]
    body = prefix + "".join(r.choice(string.digits) for _ in range(n - len(prefix) - 1))
    d = body + _luhn_digit(body)
    style = r.choice(["space", "dash", "plain"])
    if kind == "amex":
        groups = [d[:4], d[4:10], d[10:]]
    else:
        groups = [d[i:i + 4] for i in range(0, len(d), 4)]
    return d if style == "plain" else (" " if style == "space" else "-").join(groups)


def _iban(country, bban):
    num = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(num) % 97:02d}{bban}"


def gen_iban(r, valid=True):
    country, n = r.choice([("DE", 18), ("GB", 18), ("FR", 23), ("ES", 20), ("NL", 14)])
    if country in ("GB", "NL"):
        bban = "".join(r.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            r.choice(string.digits) for _ in range(n - 4))
    else:
        bban = "".join(r.choice(string.digits) for _ in range(n))
    s = _iban(country, bban)
    if not valid:
        s = s[:-1] + str((int(s[-1]) + 1) % 10) if s[-1].isdigit() else s[:-1] + "0"
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4)) if r.random() < 0.6 else s


def gen_ssn(r):
    while True:
        a = r.randint(1, 899)
        if a != 666:
            return f"{a:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"


def gen_look(r, kind):
    if kind == "version":
        return ".".join(str(r.randint(0, 20)) for _ in range(r.choice([3, 4])))
    if kind == "isbn":
        body = r.choice(["978", "979"]) + "".join(r.choice(string.digits) for _ in range(9))
        chk = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
        s = body + str(chk)
        return r.choice([s, f"{s[:3]}-{s[3]}-{s[4:6]}-{s[6:12]}-{s[12]}", f"{s[3]}-{s[4:7]}-{s[7:12]}-X"])
    if kind == "order":
        c = r.random()
        if c < 0.4:
            return str(r.randint(10 ** 7, 10 ** 10))
        if c < 0.7:
            body = "4" + "".join(r.choice(string.digits) for _ in range(14))
            return body + str((int(_luhn_digit(body)) + 1) % 10)  # 16 digits failing Luhn
        return f"{r.choice(['ORD', 'INV', 'RE'])}-{r.randint(2015, 2025)}-{r.randint(1, 999999):06d}"
    if kind == "date":
        y, m, d = r.randint(1990, 2025), r.randint(1, 12), r.randint(1, 28)
        return r.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}", f"{m}/{d}/{y}", f"{y}-{y + 1}"])
    if kind == "price":
        v = r.randint(100, 999999) / 100
        return r.choice([f"${v:,.2f}", f"{v:,.2f} €".replace(",", "X").replace(".", ",").replace("X", "."),
                         f"EUR {v:.2f}", f"£{int(v):,}"])
    if kind == "decimal":
        return f"{r.uniform(-90, 90):.5f}"
    if kind == "private_ip":
        return r.choice([f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}", f"10.{r.randint(0, 255)}.0.{r.randint(1, 254)}",
                         "127.0.0.1", f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.1"])
    if kind == "invalid_id":
        c = r.random()
        if c < 0.4:
            return gen_iban(r, valid=False)
        if c < 0.7:
            return f"{r.choice(['000', '666', '9' + str(r.randint(10, 99))])}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
        return f"{r.randint(100, 999)}-00-{r.randint(1, 9999):04d}"
    raise ValueError(kind)


def plant(pages, per_page, seed):
    """Planted documents: (id, url, text, labels) with labels [(start, end, kind, is_pii)]."""
    from datapipe.urls import url_host
    import pyarrow as pa
    from stages.pii import _region

    r = random.Random(seed)
    hosts = url_host(pa.array([p["url"] or "" for p in pages])).to_pylist()
    docs = []
    for p, host in zip(pages, hosts):
        region = _region(host, None, "US")
        paras = p["text"].split("\n")
        slots = sorted(r.sample(range(len(paras) + 1), min(per_page, len(paras) + 1)))
        inserts = {}
        for s in slots:
            if r.random() < 0.6:
                kind = r.choice(TYPES)
                x = {"email": gen_email, "ip": gen_ip, "card": gen_card, "iban": gen_iban, "ssn": gen_ssn}[kind](r) \
                    if kind != "phone" else gen_phone(r, region)
                tpl, is_pii = r.choice(PII_TEMPLATES[kind]), True
            else:
                kind = r.choice(list(LOOK_TEMPLATES))
                x = gen_look(r, kind)
                tpl, is_pii = r.choice(LOOK_TEMPLATES[kind]), False
            inserts[s] = (tpl, x, kind, is_pii)
        out, labels, pos = [], [], 0
        for i in range(len(paras) + 1):
            if i in inserts:
                tpl, x, kind, is_pii = inserts[i]
                pre, post = tpl.split("{x}", 1)
                post = post.replace("{x}", x)
                sent = pre + x + post
                labels.append((pos + len(pre), pos + len(pre) + len(x), kind, is_pii, pos, pos + len(sent)))
                out.append(sent)
                pos += len(sent) + 1
            if i < len(paras):
                out.append(paras[i])
                pos += len(paras[i]) + 1
        docs.append({"id": p["id"], "url": p["url"], "text": "\n".join(out), "labels": labels, "region": region})
    return docs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=800)
    ap.add_argument("--per-page", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import pyarrow as pa

    from bench._pages_text import realpages_text
    from datapipe.schema import BASE_SCHEMA, table_from_rows
    from datapipe.stage import apply_stage, build_stage
    from stages._pii_detect import find_spans

    table = realpages_text()
    r = random.Random(args.seed)
    idx = sorted(r.sample(range(table.num_rows), min(args.pages, table.num_rows)))
    pages = [table.slice(i, 1).to_pylist()[0] for i in idx]
    docs = plant(pages, args.per_page, args.seed)

    tp, fn, fp = Counter(), Counter(), Counter()
    fp_on = defaultdict(Counter)
    unlabelled, unl_samples = Counter(), defaultdict(list)
    misses = defaultdict(list)
    for d in docs:
        spans = find_spans(d["text"], region=d["region"])
        for a, b, k, is_pii, sa, sb in d["labels"]:
            if is_pii:
                if any(t == k and s < b and e > a for s, e, t in spans):
                    tp[k] += 1
                else:
                    fn[k] += 1
                    misses[k].append(d["text"][a:b])
        for s, e, t in spans:
            lab = [L for L in d["labels"] if L[4] < e and L[5] > s]
            if not lab:
                unlabelled[t] += 1
                if len(unl_samples[t]) < 4:
                    unl_samples[t].append(d["text"][max(0, s - 30):e + 10].replace("\n", " "))
            elif not any(L[3] and L[2] == t and L[0] < e and L[1] > s for L in lab):
                fp[t] += 1
                fp_on[t][lab[0][2]] += 1
    n_items = sum(len(d["labels"]) for d in docs)
    n_look = sum(1 for d in docs for L in d["labels"] if not L[3])
    print(f"pii: {len(docs)} real pages (realpages, seed {args.seed}), {n_items} planted sentences: "
          f"{n_items - n_look} PII items, {n_look} look-alikes ({', '.join(LOOK_TEMPLATES)})")
    print(f"{'type':<8}{'items':>7}{'found':>7}{'FP':>5}{'precision':>11}{'recall':>8}   false positives on")
    for t in TYPES:
        items = tp[t] + fn[t]
        prec = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] else float("nan")
        rec = tp[t] / items if items else float("nan")
        print(f"{t:<8}{items:>7}{tp[t]:>7}{fp[t]:>5}{prec:>11.3f}{rec:>8.3f}   {dict(fp_on[t]) or '-'}")
    for t in TYPES:
        if misses[t]:
            print(f"  missed {t}: {misses[t][:5]}")
    print(f"spans in the pages' own (unlabelled) text: {dict(unlabelled)}")
    for t, ss in unl_samples.items():
        for s in ss:
            print(f"  {t}: …{s}…")

    # speed: the stage, mask on, batches of 64
    st = build_stage("pii", {}).ensure_setup()
    sets = {"realpages (unmodified)": [{"id": p["id"], "url": p["url"], "text": p["text"]} for p in table.to_pylist()],
            "planted set": [{"id": d["id"], "url": d["url"], "text": d["text"]} for d in docs]}
    for name, rows in sets.items():
        batches = [table_from_rows(rows[i:i + 64], BASE_SCHEMA) for i in range(0, len(rows), 64)]
        apply_stage(st, batches[0])
        times = []
        for _ in range(args.repeat):
            t0 = time.process_time()
            for b in batches:
                apply_stage(st, b)
            times.append(time.process_time() - t0)
        st.counters()
        cpu = sorted(times)[len(times) // 2]
        chars = sum(len(x["text"]) for x in rows) / len(rows)
        print(f"speed {name}: {len(rows)} docs (mean {chars:,.0f} chars) in {cpu:.2f} CPU s -> "
              f"{len(rows) / cpu:,.0f} docs/s per core (median of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
