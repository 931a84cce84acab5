"""PII stage: every type found, every look-alike class left alone, masking that changes nothing else,
columns/decisions/counters, and the domain-level workflow."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datapipe.schema import BASE_SCHEMA, table_from_rows
from datapipe.stage import StageError, WorkflowContext, apply_stage, build_stage
from stages._pii_detect import card_ok, find_spans, iban_ok, luhn_ok
from stages.pii import PLACEHOLDERS, mask_text

# (text, region, expected type, expected span text)
FOUND = [
    ("Write to jane.doe+news@example-mail.co.uk for details.", "US", "email", "jane.doe+news@example-mail.co.uk"),
    ("Kontakt: info@bäckerei-test.de.", "DE", "email", None),  # IDN host: not claimed (ASCII hosts only)
    ("Call us on +44 20 7946 0018 today.", "US", "phone", "+44 20 7946 0018"),
    ("Call (212) 736-5000 after 5pm.", "US", "phone", "(212) 736-5000"),
    ("Telefon: 0211 1234567, Fax folgt.", "DE", "phone", "0211 1234567"),
    ("Tél. 01 42 68 53 00 ou passez.", "FR", "phone", "01 42 68 53 00"),
    ("Ring 0049 30 901820 from abroad.", "US", "phone", "0049 30 901820"),
    ("The server at 93.184.216.34 logged it.", "US", "ip", "93.184.216.34"),
    ("IPv6: 2001:4860:4860::8888.", "US", "ip", "2001:4860:4860::8888"),
    ("Paid with 4539 1488 0343 6467 yesterday.", "US", "card", "4539 1488 0343 6467"),
    ("Card 5425-2334-3010-9903 expired.", "US", "card", "5425-2334-3010-9903"),
    ("Amex 3782 822463 10005 on file.", "US", "card", "3782 822463 10005"),
    ("Visa 4539148803436467.", "US", "card", "4539148803436467"),
    ("IBAN DE89 3704 0044 0532 0130 00 bei der Bank.", "DE", "iban", "DE89 3704 0044 0532 0130 00"),
    ("IBAN: GB29NWBK60161331926819.", "GB", "iban", "GB29NWBK60161331926819"),
    ("His SSN is 536-22-8462, sadly.", "US", "ssn", "536-22-8462"),
]

# look-alikes: nothing may be found
NOT_FOUND = [
    # versions
    "Upgrade to version 1.2.3.4 or v2.10.0.1; build 10.0.19041.1 is current.",
    "Released 4.4.0.12-beta with Python 3.11.7.1 support.",
    # ISBNs
    "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2 (paperback), ISBN-13: 9780306406157.",
    # order numbers, tracking ids, invoice numbers (bare digit runs; Luhn-failing 16-digit ids)
    "Order #100234567 shipped. Tracking 1Z999AA10123456784. Invoice 4539148803436468.",
    "Ref. ORD-2023-004512, customer no. 30012345, account 0000000000.",
    # dates and times
    "On 2023-10-15 at 10:30:45, then 15.10.2023 and 10/15/2023, 2019-2023.",
    # tables of page ranges, calendars, a date with its hour (real pages of the benchmark set)
    "Werkstoffe 12-15 199 111 X, Verbindungen 151-165 147 / 149-152 107 X.",
    "Mo Di Mi Do Fr Sa So 01 02 03 04 05 06 07 08 09 10 11 12 13 14",
    "Lauf bis zum 05.12.1972 00 UTC, dann am 08.12.1972 12 UTC.",
    # prices, quantities, decimals, coordinates
    "Now $1,299.99 (was 1.499,00 EUR); 2,345,678 units; latitude 51.12345, 7.20518.",
    # private and reserved IPs; bad octets
    "Router 192.168.1.1, loopback 127.0.0.1, LAN 10.0.0.42, ::1, fe80::1, 300.1.2.3.",
    # SSN look-alikes that break the SSA rules; a phone-shaped one
    "Codes 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000, 078-05-1120.",
    # invalid IBAN checksum, file names with @
    "Acct DE89 3704 0044 0532 0130 01 and logo@2x.png, icon@3x.svg.",
    # invalid card: wrong Luhn, unknown issuer
    "Numbers 4539 1488 0343 6468, 9539 1488 0343 6467.",
]


@pytest.mark.parametrize("text,region,kind,span", FOUND)
def test_every_type_found(text, region, kind, span):
    spans = find_spans(text, region=region)
    if span is None:
        assert spans == [] or all(k == kind for _, _, k in spans)
        return
    assert [(k, text[a:b]) for a, b, k in spans] == [(kind, span)]


@pytest.mark.parametrize("text", NOT_FOUND)
@pytest.mark.parametrize("region", ["US", "DE", "AT"])
def test_look_alikes_not_found(text, region):
    assert [(k, text[a:b]) for a, b, k in find_spans(text, region=region)] == []


def test_checksums():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert card_ok("4539 1488 0343 6467") and not card_ok("4539 1488 0343 6468")
    assert not card_ok("1111 1111 1111 1111")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # one character short for DE


def test_ssn_shaped_and_iban_shaped_runs_are_not_phones_or_cards():
    # 3-2-4 dashed digits are valid Spanish numbers when read as digits, but nobody writes phones so;
    # digits inside an IBAN with a bad checksum are neither a card nor a phone number
    assert find_spans("Code 912-34-5678 is not valid.", region="ES") == []
    assert find_spans("Ref FR76 3000 6000 0112 3456 7890 180", region="FR") == []


def test_national_number_needs_the_region():
    text = "Telefon 0211 1234567"
    assert find_spans(text, region="DE") and not find_spans(text, region="US")


def test_mask_keeps_everything_else_byte_identical():
    text = "Hi ✓ — mail a.b@example.org,\n\tcall +1 212 736 5000; IBAN GB29NWBK60161331926819 · done  \u00a0"
    spans = find_spans(text)
    assert {k for _, _, k in spans} == {"email", "phone", "iban"}
    masked = mask_text(text, spans)
    assert masked == ("Hi ✓ — mail <EMAIL>,\n\tcall <PHONE>; IBAN <IBAN> · done  \u00a0")
    # rebuild: every non-span stretch is the same bytes
    pos, rebuilt = 0, []
    for a, b, k in spans:
        rebuilt.append(text[pos:a])
        rebuilt.append(PLACEHOLDERS[k])
        pos = b
    assert "".join(rebuilt) + text[pos:] == masked


def _rows(texts, urls=None):
    return table_from_rows([{"id": f"d{i}", "text": t, "url": (urls[i] if urls else f"https://site{i}.com/p")}
                            for i, t in enumerate(texts)], BASE_SCHEMA)


def test_stage_columns_masking_counters_and_drops():
    clean = "A plain paragraph about gardening without any personal data. " * 10
    one = "Questions? Write to help@example.org. " + clean
    dense = "a@example.org b@example.org c@example.org +1 212 736 5000"
    st = build_stage("pii", {"max_density": 0.1}).ensure_setup()
    res = apply_stage(st, _rows([clean, one, dense]))
    kept = res.kept.to_pylist()
    assert [r["id"] for r in kept] == ["d0", "d1"]
    assert kept[0]["text"] == clean and kept[0]["pii_count"] == 0 and kept[0]["pii_context"] is None
    assert kept[1]["text"] == one.replace("help@example.org", "<EMAIL>")
    assert kept[1]["pii_email"] == 1 and kept[1]["pii_count"] == 1
    assert kept[1]["pii_density"] == pytest.approx(len("help@example.org") / len(one), rel=1e-5)
    assert "[[<EMAIL>]]" in kept[1]["pii_context"]
    assert res.reasons == {"pii_v1:density_email": 1}
    rej = res.rejected.to_pylist()[0]
    assert "@" not in rej["text"]  # a rejected document's sample carries no PII either
    assert st.counters() == {"found:email": 4, "masked:email": 4, "found:phone": 1, "masked:phone": 1}
    assert st.counters() == {}  # reset after each read


def test_refilter_retunes_density_without_rescoring():
    from datapipe.refilter import refilter
    text = "Mail a@example.org now. " + "Some ordinary words to pad the page out. " * 3
    scored = apply_stage(build_stage("pii", {"max_density": None}).ensure_setup(), _rows([text])).kept
    dens = scored["pii_density"][0].as_py()
    kept, reasons = refilter(scored, "pii", {"max_density": dens / 2}, scored_with={"max_density": None})
    assert kept.num_rows == 0 and reasons.to_pylist() == ["pii_v1:density_email"]
    kept, _ = refilter(scored, "pii", {"max_density": min(1.0, dens * 2)}, scored_with={"max_density": None})
    assert kept.num_rows == 1


def test_null_text_stays_null_when_the_batch_is_masked():
    rows = _rows(["", "Mail a@example.org please, and some more words here to keep it short."])
    import pyarrow as pa
    rows = rows.set_column(rows.schema.get_field_index("text"), "text",
                           pa.array([None, rows["text"][1].as_py()], pa.large_string()))
    out = apply_stage(build_stage("pii", {"max_density": None}).ensure_setup(), rows).kept
    assert out["text"].to_pylist()[0] is None and "<EMAIL>" in out["text"].to_pylist()[1]
    assert out["pii_count"].to_pylist() == [0, 1]


def test_stage_without_masking_and_type_subset():
    text = "Mail a@example.org or call +1 212 736 5000."
    st = build_stage("pii", {"mask": False, "types": ["phone"], "max_density": None}).ensure_setup()
    row = apply_stage(st, _rows([text])).kept.to_pylist()[0]
    assert row["text"] == text and row["pii_phone"] == 1 and row["pii_email"] == 0


def test_region_from_url_and_language():
    text = "Telefon: 0211 1234567"
    st = build_stage("pii", {"max_density": None}).ensure_setup()
    out = apply_stage(st, _rows([text, text], urls=["https://firma.de/kontakt", "https://firma.com/kontakt"])).kept
    assert out["pii_phone"].to_pylist() == [1, 0]


def test_bad_options():
    for opts in ({"types": ["passport"]}, {"max_density": 2.0}, {"max_count": -1}, {"default_region": "usa"}):
        with pytest.raises(StageError):
            build_stage("pii", opts)


class SerialEngine:
    num_cpus = 1
    num_gpus = 0

    def map(self, fn, items, **_):
        return [fn(x) for x in items]


def test_domain_workflow_drops_dense_domains_and_lists_them(tmp_path: Path):
    clean = "Nothing personal here, only a long text about rivers and mountains. " * 8
    dense = "Staff: a@dir.example b@dir.example c@dir.example d@dir.example. " + clean[:200]
    rows = [{"id": f"c{i}", "text": clean, "url": f"https://calm.org/{i}"} for i in range(6)]
    rows += [{"id": f"p{i}", "text": dense, "url": f"https://www.people-dir.com/{i}"} for i in range(6)]
    rows += [{"id": "solo", "text": dense, "url": "https://tiny.net/x"}]  # below min_docs: not ranked
    st = build_stage("pii", {"max_density": None}).ensure_setup()
    scored = apply_stage(st, table_from_rows(rows, BASE_SCHEMA)).kept
    inp = tmp_path / "in"
    inp.mkdir()
    pq.write_table(scored.slice(0, 7), inp / "s0.parquet")
    pq.write_table(scored.slice(7), inp / "s1.parquet")
    out = tmp_path / "out"
    out.mkdir()
    rejects = []
    wf = build_stage("pii_domains", {"max_domain_density": 0.05, "min_docs": 3})
    ctx = WorkflowContext(inputs=[str(inp / "s0.parquet"), str(inp / "s1.parquet")], output_dir=str(out),
                          work_dir=str(tmp_path / "work"), engine=SerialEngine(),
                          reject_sink=lambda stage, shard, t: rejects.append(t))
    stats = wf.run(ctx)
    kept = [r["id"] for f in ("s0.parquet", "s1.parquet") for r in pq.read_table(out / f).to_pylist()]
    assert sorted(kept) == sorted([f"c{i}" for i in range(6)] + ["solo"])
    assert sum(s.dropped.get("pii_domains_v1:domain", 0) for s in stats.values()) == 6
    assert {r["pii_domain"] for t in rejects for r in t.to_pylist()} == {"people-dir.com"}
    listing = (tmp_path / "work" / "pii_domains.tsv").read_text().splitlines()
    assert listing[0].startswith("domain\t")
    assert listing[1].startswith("people-dir.com\t6\t6\t") and listing[1].endswith("\tyes")
    assert listing[2].startswith("calm.org\t6\t0\t") and listing[2].endswith("\tno")
    assert len(listing) == 3
