"""ABSA readers: SemEval-2014/MAMS and 2015/2016 XML, the $T$ format; rows, groups, labels, counts, one-line errors."""

from pathlib import Path

import pytest

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.data.aspects import read_aspect_file, read_dollar_t, read_semeval_xml

ABSA = Path(__file__).resolve().parents[2] / "shared" / "data" / "absa"

SEMEVAL14 = """<?xml version="1.0" encoding="utf-8"?>
<sentences>
  <sentence id="813">
    <text>The food was great but the service was slow.</text>
    <aspectTerms>
      <aspectTerm term="food" polarity="positive" from="4" to="8"/>
      <aspectTerm term="service" polarity="negative" from="27" to="34"/>
    </aspectTerms>
    <aspectCategories>
      <aspectCategory category="food" polarity="positive"/>
      <aspectCategory category="service" polarity="negative"/>
    </aspectCategories>
  </sentence>
  <sentence id="814">
    <text>Café nights are fun.</text>
    <aspectCategories><aspectCategory category="ambience" polarity="positive"/></aspectCategories>
  </sentence>
  <sentence>
    <text>The crêpes were fine.</text>
    <aspectTerms><aspectTerm term="crêpes" polarity="neutral" from="4" to="10"/></aspectTerms>
  </sentence>
</sentences>
"""

SEMEVAL16 = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Reviews>
  <Review rid="1004293">
    <sentences>
      <sentence id="1004293:0">
        <text>Judging from previous posts this used to be a good place.</text>
        <Opinions><Opinion target="place" category="RESTAURANT#GENERAL" polarity="negative" from="51" to="56"/>
        </Opinions>
      </sentence>
      <sentence id="1004293:1">
        <text>Cheap but the pasta tasted of nothing.</text>
        <Opinions>
          <Opinion target="NULL" category="FOOD#PRICES" polarity="positive" from="0" to="0"/>
          <Opinion target="pasta" category="FOOD#QUALITY" polarity="negative" from="14" to="19"/>
          <Opinion target="pasta" category="FOOD#STYLE_OPTIONS" polarity="negative" from="14" to="19"/>
          <Opinion target="NULL" category="FOOD#QUALITY" polarity="positive" from="0" to="0"/>
        </Opinions>
      </sentence>
      <sentence id="1004293:2" OutOfScope="TRUE"><text>We left.</text></sentence>
    </sentences>
  </Review>
</Reviews>
"""


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def records(frame):
    return [tuple(r) for r in frame[["row", "aspect", "raw_label", "group"]].itertuples(index=False)]


def test_semeval14_terms_and_categories(tmp_path):
    path = write(tmp_path, "rest.xml", SEMEVAL14)
    terms, counts = read_semeval_xml(path, "term")
    assert list(terms.columns) == ["row", "text", "aspect", "raw_label", "group"]
    assert records(terms) == [(6, "food", "positive", "813"), (7, "service", "negative", "813"),
                              (20, "crêpes", "neutral", "rest.xml:s3")]  # no id: file and ordinal
    assert terms.text.iloc[0] == "The food was great but the service was slow."
    # sentence 814 has categories only
    assert counts == {"implicit": 0, "no_aspects": 1, "repeated_in_sentence": 0, "target_repeated": 0}
    categories, counts = read_aspect_file(path, "category")
    assert records(categories) == [(10, "food", "positive", "813"), (11, "service", "negative", "813"),
                                   (16, "ambience", "positive", "814")]
    assert counts["no_aspects"] == 1


def test_semeval16_opinions_null_target_and_conflicting_category(tmp_path):
    path = write(tmp_path, "rest16.xml", SEMEVAL16)
    terms, counts = read_semeval_xml(path, "term")
    assert records(terms) == [(7, "place", "negative", "1004293:0"), (14, "pasta", "negative", "1004293:1")]
    # pasta once per category; "We left."
    assert counts == {"implicit": 2, "no_aspects": 1, "repeated_in_sentence": 1, "target_repeated": 0}
    categories, counts = read_semeval_xml(path, "category")
    assert records(categories) == [(7, "RESTAURANT#GENERAL", "negative", "1004293:0"),
                                   (13, "FOOD#PRICES", "positive", "1004293:1"),
                                   (14, "FOOD#QUALITY", "conflict", "1004293:1"),  # negative, then positive
                                   (15, "FOOD#STYLE_OPTIONS", "negative", "1004293:1")]
    assert counts == {"implicit": 0, "no_aspects": 1, "repeated_in_sentence": 1, "target_repeated": 0}


def test_dollar_t_restores_the_sentence_and_groups_its_aspects(tmp_path):
    path = write(tmp_path, "train.seg", "The $T$ was great but the service was slow .\nfood\n1\n"
                                        "The food was great but the $T$ was slow .\nservice\n-1\n"
                                        "It was $T$ .\nok\n0\n")
    frame, counts = read_aspect_file(path, "term")
    assert records(frame)[:2] == [(1, "food", "positive", "The food was great but the service was slow ."),
                                  (4, "service", "negative", "The food was great but the service was slow .")]
    assert frame.text.tolist()[2] == "It was ok ." and frame.raw_label.tolist()[2] == "neutral"
    assert counts == {"implicit": 0, "no_aspects": 0, "repeated_in_sentence": 0, "target_repeated": 0}
    assert len(read_dollar_t(write(tmp_path, "crlf.raw", "A $T$ .\r\nb\r\n1\r\n\r\n"))[0]) == 1


def test_dollar_t_reads_a_target_marked_more_than_once(tmp_path):
    """ABSA-PyTorch's files (the Twitter set: 38 of 692 test blocks) mark every occurrence of the target: each $T$
    is the aspect, the block is one row, and the count says how many blocks did so."""
    path = write(tmp_path, "test.raw", "$T$ is great , i love $T$ !\nbritney spears\n1\n"
                                       "the $T$ was slow\nservice\n-1\n"
                                       "no $T$ , no $T$ , no $T$ .\nwifi\n0\n")
    frame, counts = read_aspect_file(path, "term")
    assert frame.text.tolist() == ["britney spears is great , i love britney spears !", "the service was slow",
                                   "no wifi , no wifi , no wifi ."]
    assert records(frame)[0] == (1, "britney spears", "positive", frame.text[0])
    assert counts == {"implicit": 0, "no_aspects": 0, "repeated_in_sentence": 0, "target_repeated": 2}


def fails(path, line, *words, kind="term"):
    with pytest.raises(DataError) as info:
        read_aspect_file(path, kind)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: line {line}:"), message
    assert all(word in message for word in words), message


XML_ERRORS = {
    "broken": (SEMEVAL14.replace("</aspectTerms>", "</aspectTerm>", 1), 8, ["not well-formed", "mismatched tag"]),
    "no_polarity": (SEMEVAL14.replace(' polarity="negative" from="27"', ' from="27"'), 7, ["aspectTerm", "'polarity'"]),
    "no_text": (SEMEVAL14.replace("<text>Café nights are fun.</text>", ""), 14, ["no <text>"]),
    "offsets": (SEMEVAL14.replace('from="27" to="34"', 'from="26" to="33"'), 7, ["text[26:33]", "'service'"]),
    "no_target": (SEMEVAL16.replace('target="place" ', ""), 7, ["Opinion", "'target'"]),
    "laughs": ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
               ' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n<sentences>&lol2;</sentences>\n',
               3, ["DOCTYPE", "'lol'"]),
    "external": ('<?xml version="1.0"?>\n<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<s>&x;</s>\n',
                 2, ["DOCTYPE", "'x'"]),
}


@pytest.mark.parametrize("case", sorted(XML_ERRORS))
def test_xml_errors_name_file_and_line(tmp_path, case):
    content, line, words = XML_ERRORS[case]
    fails(write(tmp_path, f"{case}.xml", content), line, *words)


DOLLAR_T_ERRORS = {
    "count": ("A $T$ .\nb\n1\nC $T$ .\nd\n", 4, ["5 lines", "multiple of 3"]),
    "no_marker": ("A $T$ .\nb\n1\nC d .\nd\n0\n", 4, ["0 '$T$'"]),
    "empty_aspect": ("A $T$ .\n \n1\n", 2, ["aspect is empty"]),
    "polarity": ("A $T$ .\nb\n1\nC $T$ .\nd\npositive\n", 6, ["'positive'", "-1, 0 or 1"]),
    "latin1": ("A $T$ .\nb\n1\nCaf\u00e9 $T$ .\nd\n0\n".encode("latin-1"), 4, ["not UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(DOLLAR_T_ERRORS))
def test_dollar_t_errors_name_file_and_line(tmp_path, case):
    content, line, words = DOLLAR_T_ERRORS[case]
    fails(write(tmp_path, f"{case}.seg", content), line, *words)


def test_unknown_suffix_and_kind(tmp_path):
    for path, kind, words in [(tmp_path / "a.csv", "term", [".xml", ".seg", ".raw"]),
                              (write(tmp_path, "a.xml", SEMEVAL14), "opinion", ["term", "category"]),
                              (tmp_path / "a.seg", "category", ["'term'"])]:
        with pytest.raises(DataError) as info:
            read_aspect_file(path, kind)
        assert all(word in str(info.value) for word in words), str(info.value)


def test_real_data_counts():
    if not ABSA.is_dir():
        pytest.skip(f"{ABSA} is absent")
    for split, sentences, aspects in [("train", 4297, 11186), ("val", 500, 1332), ("test", 500, 1336)]:
        frame, counts = read_semeval_xml(ABSA / "mams-atsa" / f"{split}.xml", "term")
        assert (frame.group.nunique(), len(frame)) == (sentences, aspects), split
        assert counts == {"implicit": 0, "no_aspects": 0, "repeated_in_sentence": 0, "target_repeated": 0}
        per_sentence = frame.groupby("group").raw_label
        assert per_sentence.size().min() >= 2 and per_sentence.nunique().min() >= 2, split  # what MAMS promises
    for split, aspects in [("train", 3608), ("test", 1120)]:
        frame, _ = read_dollar_t(ABSA / "semeval14-restaurants" / f"{split}.seg")
        assert len(frame) == aspects and "conflict" not in set(frame.raw_label), split
        assert not frame.text.str.contains("$T$", regex=False).any()
