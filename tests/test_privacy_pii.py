"""PII recognizers, operators, redaction of files and the rendered evaluation set."""

from __future__ import annotations

import csv
import json
import random
import re

import pytest
from fakes import assert_user_error, run_cli

pytest.importorskip("phonenumbers")
pytest.importorskip("faker")
pytest.importorskip("wordfreq")

from lmforge.privacy.checksums import luhn_valid, valid_id15, valid_id18  # noqa: E402
from lmforge.privacy.pii import analyze, anonymize  # noqa: E402
from lmforge.privacy.pii.evalset import PiiDoc, render_pii_set, score  # noqa: E402
from lmforge.privacy.pii.fake import fake_value  # noqa: E402
from lmforge.privacy.pii.spans import PiiSpan, resolve_overlaps  # noqa: E402

# (text, type, the exact substring that must be found)
POSITIVES = [
    ("邮箱：zhang.wei+news@mail.tsinghua.edu.cn。", "EMAIL", "zhang.wei+news@mail.tsinghua.edu.cn"),
    ("write to o'neil_99@example.co.uk, thanks", "EMAIL", "o'neil_99@example.co.uk"),
    ("电话13800138000，", "PHONE", "13800138000"),
    ("手机：138 0013 8000。", "PHONE", "138 0013 8000"),
    ("致电+86 138-0013-8000", "PHONE", "+86 138-0013-8000"),
    ("(+86)15912345678请回电", "PHONE", "(+86)15912345678"),
    ("座机 010-62345678 转", "PHONE", "010-62345678"),
    ("总机 (0755) 8601 3388", "PHONE", "(0755) 8601 3388"),
    ("call +44 20 7946 0958 today", "PHONE", "+44 20 7946 0958"),
    ("call (415) 555-0132 today", "PHONE", "(415) 555-0132"),
    ("身份证号11010519491231002X。", "ID_CN", "11010519491231002X"),
    ("身份证 110105 19491231 002X", "ID_CN", "110105 19491231 002X"),
    ("旧证号 110105491231002 已升级", "ID_CN", "110105491231002"),
    ("卡号 6222 0212 3456 7890 128", "BANK_CARD", "6222 0212 3456 7890 128"),
    ("card 4111111111111111 expires", "BANK_CARD", "4111111111111111"),
    ("护照号码 E12345678", "PASSPORT", "E12345678"),
    ("passport: XT0813243.", "PASSPORT", "XT0813243"),
    ("登录IP 192.168.1.10，", "IP", "192.168.1.10"),
    ("from fe80::1ff:fe23:4567:890a.", "IP", "fe80::1ff:fe23:4567:890a"),
    ("see https://example.com/a?b=1.", "URL", "https://example.com/a?b=1"),
    ("网址是shop.example.com/user?id=3。", "URL", "shop.example.com/user?id=3"),
    ("出生日期：1978年9月27日，", "DATE_OF_BIRTH", "1978年9月27日"),
    ("born on March 7, 1990.", "DATE_OF_BIRTH", "March 7, 1990"),
    ("家住北京市朝阳区建国路88号3单元502室。", "ADDRESS", "北京市朝阳区建国路88号3单元502室"),
    ("他搬到了成都市武侯区长安街461号。", "ADDRESS", "成都市武侯区长安街461号"),
    ("ship to 221 Baker Street, London NW1 6XE.", "ADDRESS", "221 Baker Street, London NW1 6XE"),
    ("联系人：王小明，电话", "PERSON", "王小明"),
    ("请交给欧阳娜娜女士。", "PERSON", "欧阳娜娜"),
    ("患者卢海燕，女", "PERSON", "卢海燕"),
    ("Dear Ms. Johnson,", "PERSON", "Johnson"),
    ("Contact John Smith at", "PERSON", "John Smith"),
    ("The landlord, Aarav Sharma, lives here.", "PERSON", "Aarav Sharma"),
]

# text, the type that must NOT be reported anywhere in it
NEGATIVES = [
    ("订单号：110101199003077778。", "ID_CN"),         # 18 digits, wrong check character
    ("编号110105194912310021已作废", "ID_CN"),
    ("订单号：110101199003077778。", "BANK_CARD"),
    ("交易流水号 6637934726097422。", "BANK_CARD"),      # fails Luhn
    ("Order #4111111111111111 has shipped.", "BANK_CARD"),  # passes Luhn, but an order label
    ("时间戳 1699165800123，", "PHONE"),
    ("日志 20231105143000 已归档。", "PHONE"),
    ("Epoch 1115254220488 ms.", "PHONE"),
    ("系统版本 1.2.3.4。", "IP"),
    ("Running version 10.0.0.1 now.", "IP"),
    ("时间：2023-11-05 14:30:00。", "DATE_OF_BIRTH"),
    ("生于上海。时间：2018-07-17 22:34:20。", "DATE_OF_BIRTH"),
    ("商品编码 N06348324，价格¥80.90。", "PASSPORT"),
    ("SKU A12345678 costs $5.", "PASSPORT"),
    ("马上就到，方便的话高兴地一起去黄金海岸。", "PERSON"),
    ("我的银行卡号是多少？", "PERSON"),
    ("Machine Learning Weekly covers Deep Learning and Blue Ocean Capital.", "PERSON"),
    ("The Red Cross and General Electric met in New York.", "PERSON"),
    ("请到香港中路办理。", "ADDRESS"),
]


@pytest.mark.parametrize("text,kind,expected", POSITIVES)
def test_recognizer_finds(text, kind, expected):
    found = [text[s.start:s.end] for s in analyze(text) if s.type == kind]
    assert found == [expected], (found, [(text[s.start:s.end], s.type) for s in analyze(text)])


@pytest.mark.parametrize("text,kind", NEGATIVES)
def test_hard_negative_is_not_reported(text, kind):
    assert [text[s.start:s.end] for s in analyze(text) if s.type == kind] == []


def test_checksums_and_context_move_the_score():
    valid, wrong = "11010519491231002X", "110105194912310021"
    score = {s.type: s.score for s in analyze(f"号码 {valid}", all_spans=True)}
    assert score["ID_CN"] >= 0.95
    assert max(s.score for s in analyze(f"号码 {wrong}", ["ID_CN"], all_spans=True)) < 0.1
    bare = analyze("010-62345678", ["PHONE"], all_spans=True)[0].score
    labelled = analyze("电话 010-62345678", ["PHONE"], all_spans=True)[0].score
    assert labelled > bare
    ordered = analyze("订单号 010-62345678", ["PHONE"], all_spans=True)[0].score
    assert ordered < 0.5 < bare


def test_a_valid_id_is_not_also_a_card():
    body = "62010219900307123"  # Gansu: starts like a UnionPay card
    from lmforge.privacy.checksums import id_check_char

    number = body + id_check_char(body)
    spans = analyze(f"证件 {number}")
    assert [(s.type, s.start) for s in spans] == [("ID_CN", 3)]


def test_overlaps_keep_the_higher_score_then_the_longer_span():
    a, b, c = PiiSpan(0, 5, "A", 0.6), PiiSpan(3, 9, "B", 0.9), PiiSpan(10, 12, "C", 0.6)
    assert resolve_overlaps([a, b, c]) == [b, c]
    d = PiiSpan(0, 9, "D", 0.9)
    assert resolve_overlaps([b, d]) == [d]


def test_unknown_type_is_a_config_error():
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown PII type FOO"):
        analyze("x", ["EMAIL", "FOO"])


# ----------------------------------------------------------------------------- operators

DOC = ("联系人：王小明，电话138-0013-8000，邮箱 wang.xm@163.com，身份证号 11010519491231002X。"
       "卡号 6222 0212 3456 7890 128。Dear Ms. Johnson, call +44 20 7946 0958, IP 10.0.0.1.")


def test_mask_and_redact():
    spans = analyze(DOC)
    masked = anonymize(DOC, spans, "mask")
    assert "[PHONE]" in masked and "[ID_CN]" in masked and "[PERSON]" in masked
    assert "13800" not in masked and "wang.xm" not in masked
    redacted = anonymize(DOC, spans, "redact")
    assert len(redacted) == len(DOC) - sum(s.end - s.start for s in spans)


def test_hash_is_deterministic_per_salt_and_normalised():
    text = "电话 138-0013-8000 和 13800138000，另一个 13900139000"
    spans = analyze(text, ["PHONE"])
    out = anonymize(text, spans, "hash", b"salt-one-0123456")
    tokens = re.findall(r"PHONE_[0-9a-f]{16}", out)
    assert len(tokens) == 3 and tokens[0] == tokens[1] != tokens[2]
    other = re.findall(r"PHONE_[0-9a-f]{16}", anonymize(text, spans, "hash", b"salt-two-0123456"))
    assert other[0] != tokens[0]
    assert anonymize(text, spans, "hash", b"salt-one-0123456") == out


def test_fake_values_validate_keep_the_format_and_are_deterministic():
    import phonenumbers as pn

    spans = analyze(DOC)
    one = anonymize(DOC, spans, "fake", b"0123456789abcdef")
    assert one == anonymize(DOC, spans, "fake", b"0123456789abcdef")
    assert one != anonymize(DOC, spans, "fake", b"fedcba9876543210")
    rng = random.Random(0)
    for _ in range(50):
        new_id = fake_value("ID_CN", "11010519491231002X", rng)
        assert valid_id18(new_id) and new_id != "11010519491231002X"
        assert valid_id15(fake_value("ID_CN", "110105491231002", rng))
        card = fake_value("BANK_CARD", "6222 0212 3456 7890 128", rng)
        assert re.fullmatch(r"6222 02\d\d \d{4} \d{4} \d{3}", card)
        assert luhn_valid(card.replace(" ", ""))
        phone = fake_value("PHONE", "138-0013-8000", rng)
        assert re.fullmatch(r"13\d-\d{4}-\d{4}", phone)
        assert pn.is_valid_number(pn.parse(phone, "CN"))
        intl = fake_value("PHONE", "+44 20 7946 0958", rng)
        assert intl.startswith("+44 20") and pn.is_valid_number(pn.parse(intl))
        assert re.fullmatch(r"[a-z]+\d*@example\.com", fake_value("EMAIL", "a@b.cn", rng))
        import ipaddress

        ipaddress.ip_address(fake_value("IP", "10.0.0.1", rng))
        ipaddress.ip_address(fake_value("IP", "fe80::1", rng))
    # the replaced document is found again, with the same types at the new places
    assert [s.type for s in analyze(one)] == [s.type for s in spans]


def test_hash_and_fake_need_a_salt():
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a salt"):
        anonymize(DOC, analyze(DOC), "hash")


# ----------------------------------------------------------------------------- evaluation


def test_score_matches_by_iou_one_to_one():
    doc = PiiDoc("abcdefghij", [PiiSpan(0, 4, "A", 1), PiiSpan(6, 10, "A", 1)])
    res = score([doc], lambda t: [PiiSpan(0, 3, "A", 1), PiiSpan(1, 4, "A", 1),
                                  PiiSpan(6, 7, "A", 1)], ("A",))["A"]
    # (0,3) matches gold (0,4) (IoU 0.75); (1,4) is a second claim on it; (6,7) IoU 0.25
    assert (res["tp"], res["fp"], res["fn"]) == (1, 2, 1)
    assert res["precision"] == pytest.approx(1 / 3) and res["recall"] == 0.5
    assert res["f2"] == pytest.approx(5 * (1 / 3) * 0.5 / (4 / 3 + 0.5))


def test_rendered_set_is_deterministic_and_its_spans_are_consistent():
    a, b = render_pii_set("zh", 20, 3), render_pii_set("zh", 20, 3)
    assert [d.text for d in a] == [d.text for d in b]
    for doc in a + render_pii_set("en", 20, 3, "heldout2"):
        for s in doc.spans:
            value = doc.text[s.start:s.end]
            assert value and value == value.strip()
            if s.type == "ID_CN":
                digits = re.sub(r"[ -]", "", value)
                assert valid_id18(digits) or valid_id15(digits)
            if s.type == "BANK_CARD":
                assert luhn_valid(re.sub(r"[ -]", "", value))


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_bars_on_the_rendered_set(lang):
    """The issue's bars, on 150 documents of the development templates (seed 7, not the
    seed tuned on); docs/privacy.md reports the held-out templates as well."""
    res = score(render_pii_set(lang, 150, 7), analyze)
    for kind in ("ID_CN", "BANK_CARD", "EMAIL"):
        assert res[kind]["recall"] >= 0.99 and res[kind]["precision"] >= 0.99, (kind, res[kind])
    assert res["PHONE"]["recall"] >= 0.98, res["PHONE"]
    assert res["PERSON"]["recall"] >= 0.90 and res["PERSON"]["precision"] >= 0.85, res["PERSON"]


def test_lmforge_is_at_least_as_good_as_presidio_patterns_on_english():
    presidio = pytest.importorskip("presidio_analyzer")
    del presidio
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from pii import PEER_TYPES, presidio_predict

    docs = render_pii_set("en", 60, 11, "heldout2")
    ours, theirs = score(docs, analyze, PEER_TYPES), score(docs, presidio_predict(), PEER_TYPES)
    for kind in PEER_TYPES:
        assert ours[kind]["f2"] >= theirs[kind]["f2"], (kind, ours[kind], theirs[kind])
    assert theirs["EMAIL"]["f2"] == ours["EMAIL"]["f2"] == 1.0  # both find every e-mail


# ----------------------------------------------------------------------------- commands


def test_redact_keeps_each_format(tmp_path, capsys):
    txt = tmp_path / "a.txt"
    txt.write_text("电话13800138000\r\nno pii here\nmail bob@example.com\n", encoding="utf-8")
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text(json.dumps({"id": "13800138000", "messages": [
        {"role": "user", "content": "我叫李秀英，电话13800138000"}]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    table = tmp_path / "c.csv"
    table.write_text('name,note\nWang,"call 13800138000, ok"\n', encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["data", "redact", str(txt), str(jsonl), str(table), "--out",
                                 str(out)], capsys)
    assert code == 0, err
    assert "EMAIL 1, PERSON 1, PHONE 4" in stdout
    assert (out / "a.txt").read_bytes().decode() == "电话[PHONE]\r\nno pii here\nmail [EMAIL]\n"
    rec = json.loads((out / "b.jsonl").read_text(encoding="utf-8"))
    assert rec["id"] == "[PHONE]" and rec["messages"][0] == {
        "role": "user", "content": "我叫[PERSON]，电话[PHONE]"}
    rows = list(csv.reader((out / "c.csv").open(encoding="utf-8")))
    assert rows == [["name", "note"], ["Wang", "call [PHONE], ok"]]
    # --field limits a JSONL file to the named top-level fields
    code, _, err = run_cli(["data", "redact", str(jsonl), "--out", str(tmp_path / "d.jsonl"),
                            "--field", "messages", "--types", "phone"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "d.jsonl").read_text(encoding="utf-8"))
    assert rec["id"] == "13800138000" and "李秀英" in rec["messages"][0]["content"]


def test_redact_hash_with_a_salt_file_is_stable_across_runs(tmp_path, capsys):
    src = tmp_path / "a.txt"
    src.write_text("电话13800138000\n", encoding="utf-8")
    salt = tmp_path / "salt"
    salt.write_text("a secret salt of enough bytes")
    outs = []
    for i in range(2):
        dst = tmp_path / f"o{i}.txt"
        code, _, err = run_cli(["data", "redact", str(src), "--out", str(dst), "--operator",
                                "hash", "--salt-file", str(salt)], capsys)
        assert code == 0, err
        outs.append(dst.read_text())
    assert outs[0] == outs[1] and re.fullmatch(r"电话PHONE_[0-9a-f]{16}\n", outs[0])


def test_redact_bad_input(tmp_path, capsys):
    src = tmp_path / "a.txt"
    src.write_text("x\n")
    out = str(tmp_path / "o.txt")
    assert_user_error(["data", "redact", str(src), "--out", out, "--types", "PHONE,FOO"], capsys,
                      "unknown PII type FOO")
    assert_user_error(["data", "redact", str(src), "--out", out, "--operator", "shred"], capsys,
                      "unknown operator")
    assert_user_error(["data", "redact", str(src), "--out", str(src)], capsys, "is the input")
    assert_user_error(["data", "redact", str(src), "--out", out, "--operator", "hash",
                       "--salt-file", str(tmp_path / "none")], capsys, "cannot read the salt")
    assert_user_error(["data", "redact", str(src), "--out", out, "--threshold", "0"], capsys,
                      "--threshold")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "x"}\n{"other": 1}\n')
    assert_user_error(["data", "redact", str(bad), "--out", str(tmp_path / "o.jsonl"),
                       "--field", "text"], capsys, "line 2", "'text' is missing")
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.txt").exists()
    assert_user_error(["data", "prepare", str(src), "--out", str(tmp_path / "p"),
                       "--pii-types", "PHONE"], capsys, "--redact-pii")


def test_prepare_redacts_pii_before_training(tmp_path, capsys):
    import numpy as np

    from lmforge.tokenize import Tokenizer

    src = tmp_path / "corpus.txt"
    src.write_text("".join(f"第{i}行：电话13800138000，邮箱 bob{i}@example.com\n"
                           for i in range(40)), encoding="utf-8")
    out = tmp_path / "prep"
    code, _, err = run_cli(["data", "prepare", str(src), "--out", str(out), "--kind", "char",
                            "--val-fraction", "0", "--redact-pii", "--min-frequency", "1"],
                           capsys)
    assert code == 0, err
    tok = Tokenizer.load(out)
    ids = np.fromfile(next(out.glob("train-*.bin")), dtype=np.uint16)
    text = tok.decode(ids.tolist())
    assert "[PHONE]" in text and "[EMAIL]" in text
    assert "13800138000" not in text and "@example.com" not in text
