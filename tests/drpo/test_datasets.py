"""Training queries (drpo/datasets.py) and the project's own data files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from drpo.datasets import DEFAULT_TRAIN, TrainQuery, load_queries, stratified_order
from drpo.errors import UserInputError
from schemas.catalogue import DATA_DIR, AspectCatalogue

# ---------------------------------------------------------------- load_queries: formats


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_with_query_field(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"query": "  What is a black hole?  ", "source": "open"},
        {"query": "Sort these numbers: 3, 1, 2"},
    ])
    queries = load_queries(path)
    assert queries == [
        TrainQuery(query="What is a black hole?", source="open"),
        TrainQuery(query="Sort these numbers: 3, 1, 2", source="file"),
    ]


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "one"}\n\n   \n{"query": "two"}\n', encoding="utf-8")
    assert [q.query for q in load_queries(path)] == ["one", "two"]


def test_jsonl_instruction_with_alpaca_input_appended_after_a_blank_line(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Translate to French.", "input": "  Good morning  ", "output": "Bonjour"},
        {"instruction": "Name three primary colours.", "input": ""},
        {"instruction": "Summarise the text.", "input": "   "},
    ])
    assert [q.query for q in load_queries(path)] == [
        "Translate to French.\n\nGood morning",
        "Name three primary colours.",
        "Summarise the text.",
    ]


def test_query_field_wins_over_instruction(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"query": "from query", "instruction": "from instruction"}])
    assert [q.query for q in load_queries(path)] == ["from query"]


def test_json_array(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([
        {"query": "First?", "source": "instruct"},
        {"instruction": "Second.", "input": "context"},
    ], indent=2), encoding="utf-8")
    assert load_queries(path) == [
        TrainQuery(query="First?", source="instruct"),
        TrainQuery(query="Second.\n\ncontext", source="file"),
    ]


def test_json_array_detected_by_content_whatever_the_suffix(tmp_path):
    path = tmp_path / "queries.txt"
    path.write_text('\n  [{"query": "a"}, {"query": "b"}]\n', encoding="utf-8")
    assert [q.query for q in load_queries(path)] == ["a", "b"]


def test_plain_text_one_query_per_line_skipping_blank_lines(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("  How do tides work?  \n\n\t\nWrite a haiku about rain.\n\n", encoding="utf-8")
    assert load_queries(path) == [
        TrainQuery(query="How do tides work?", source="file"),
        TrainQuery(query="Write a haiku about rain.", source="file"),
    ]


def test_a_leading_utf8_bom_is_not_part_of_the_first_query(tmp_path):
    text_file = tmp_path / "q.txt"
    text_file.write_bytes("\ufeffFirst query\nSecond query\n".encode())
    assert [q.query for q in load_queries(text_file)] == ["First query", "Second query"]
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_bytes('\ufeff{"query": "a"}\n'.encode())
    assert [q.query for q in load_queries(jsonl)] == ["a"]


# ---------------------------------------------------------------- load_queries: errors


def load_error(path: Path) -> str:
    with pytest.raises(UserInputError) as info:
        load_queries(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "fine"}\n\n{"query": "broken"\n{"query": "after"}\n', encoding="utf-8")
    assert f"{path}:3:" in load_error(path)


def test_jsonl_record_without_query_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"query": "fine"}, {"text": "no query field"}])
    message = load_error(path)
    assert f"{path}:2:" in message
    assert "'query'" in message


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"query": "   "}, id="blank-query"),
        pytest.param({"query": 42}, id="non-string-query"),
        pytest.param({"instruction": ""}, id="empty-instruction"),
    ],
)
def test_jsonl_record_with_unusable_query_names_file_and_line(tmp_path, record):
    path = write_jsonl(tmp_path / "q.jsonl", [record])
    assert f"{path}:1:" in load_error(path)


def test_jsonl_line_that_is_not_an_object_names_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "ok"}\n["a", "list"]\n', encoding="utf-8")
    message = load_error(path)
    assert f"{path}:2:" in message
    assert "list" in message


def test_json_array_item_without_query_names_file_and_item(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('[{"query": "ok"}, {"nope": 1}]', encoding="utf-8")
    assert f"{path} item 1" in load_error(path)


def test_malformed_json_array_names_file_and_line(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('[\n  {"query": "ok"},\n  {"query": }\n]\n', encoding="utf-8")
    assert f"{path}:3:" in load_error(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("empty.jsonl", "", id="empty-jsonl"),
        pytest.param("blank.jsonl", "\n  \n\n", id="blank-lines-jsonl"),
        pytest.param("empty.txt", "", id="empty-text"),
        pytest.param("empty.json", "[]", id="empty-array"),
    ],
)
def test_empty_file_names_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    message = load_error(path)
    assert str(path) in message
    assert "no queries" in message


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "absent.jsonl"
    message = load_error(path)
    assert str(path) in message
    assert "no such file" in message


def test_a_folder_is_not_a_training_file(tmp_path):
    assert str(tmp_path) in load_error(tmp_path)


def test_non_utf8_bytes_name_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\u00e9 au lait?\n".encode("latin-1"))  # é is 0xE9, byte 3
    message = load_error(path)
    assert str(path) in message
    assert "UTF-8" in message
    assert "byte 3" in message


# ---------------------------------------------------------------- stratified_order


@pytest.fixture(scope="module")
def train() -> list[TrainQuery]:
    return load_queries(DEFAULT_TRAIN)


def test_same_seed_gives_the_same_order(train):
    assert stratified_order(train, 7) == stratified_order(train, 7)


def test_different_seeds_give_different_orders(train):
    orders = {tuple(q.query for q in stratified_order(train, seed)) for seed in (1, 2, 3, 42)}
    assert len(orders) == 4


def test_the_input_list_is_not_modified(train):
    before = list(train)
    stratified_order(train, 3)
    assert train == before


@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_every_query_appears_exactly_once(train, seed):
    ordered = stratified_order(train, seed)
    assert len(ordered) == len(train)
    assert Counter(q.model_dump_json() for q in ordered) == Counter(q.model_dump_json() for q in train)


@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_every_prefix_keeps_each_sources_share_within_one_query(train, seed):
    ordered = stratified_order(train, seed)
    total = Counter(q.source for q in train)
    n = len(train)
    for length in range(10, n + 1):
        prefix = Counter(q.source for q in ordered[:length])
        for source, count in total.items():
            expected = length * count / n
            assert abs(prefix[source] - expected) <= 1, (seed, length, source, prefix[source], expected)


def test_a_single_source_is_just_shuffled(tmp_path):
    queries = [TrainQuery(query=f"q{i}") for i in range(20)]
    ordered = stratified_order(queries, 5)
    assert sorted(q.query for q in ordered) == sorted(q.query for q in queries)
    assert ordered != queries


def test_empty_input_gives_an_empty_order():
    assert stratified_order([], 1) == []


# ---------------------------------------------------------------- the project's data


def test_train_queries_mix_instruct_open_and_harmful_as_in_the_paper(train):
    assert len(train) >= 60
    counts = Counter(q.source for q in train)
    assert set(counts) == {"instruct", "open", "harmful"}
    for source, share in {"instruct": 0.48, "open": 0.29, "harmful": 0.23}.items():
        assert abs(counts[source] / len(train) - share) <= 0.06, (source, counts[source], len(train))


def test_train_queries_are_distinct(train):
    assert len({q.query for q in train}) == len(train)


def test_seed_examples_have_a_query_and_an_answer():
    text = (DATA_DIR / "seed_examples.jsonl").read_text(encoding="utf-8")
    examples = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len(examples) >= 8
    for example in examples:
        assert isinstance(example["query"], str) and example["query"].strip()
        assert isinstance(example["answer"], str) and example["answer"].strip()


CATALOGUE_NAMES = [
    "Helpfulness", "Clarity", "Factuality", "Depth", "Engagement", "Conciseness", "Safety",
    "Compliance", "Limitations", "Critical-Thinking", "Creativity", "Interactivity", "Empathy", "Sensitivity",
]


@pytest.fixture(scope="module")
def catalogue() -> AspectCatalogue:
    return AspectCatalogue.load()


def test_aspect_catalogue_holds_the_14_aspects(catalogue):
    assert catalogue.names == CATALOGUE_NAMES


def test_every_name_and_alias_resolves_to_its_own_aspect(catalogue):
    for aspect in catalogue.aspects:
        assert catalogue.resolve(aspect.name) == aspect.name
        for alias in aspect.aliases:
            assert catalogue.resolve(alias) == aspect.name, (alias, aspect.name)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        pytest.param("critical thinking", "Critical-Thinking", id="space-for-hyphen"),
        pytest.param("CRITICAL_THINKING", "Critical-Thinking", id="upper-underscore"),
        pytest.param("Compliance with Instructions", "Compliance", id="alias"),
        pytest.param("  **Clarity**  ", "Clarity", id="markdown-bold"),
        pytest.param("'Safety'", "Safety", id="quoted"),
        pytest.param("nonsense", None, id="unknown"),
        pytest.param("", None, id="empty"),
    ],
)
def test_resolve(catalogue, raw, name):
    assert catalogue.resolve(raw) == name
