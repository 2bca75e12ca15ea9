"""End-to-end fiq-bench runs on tiny catalogs and models, checked against the results-JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.__main__ import main
from benchmarks.config import BenchConfig, build_parser, config_from_args
from benchmarks.report import markdown_table, summarize_ranks
from fiq_env.errors import ConfigError, DataError

METRICS = ("percentile", "recall@10", "recall@50")


def check_results_contract(results: dict, agents: list[str], turns: int, episodes: int) -> None:
    """Assert that one results JSON follows the documented layout and value ranges."""
    for key, kind in (
        ("catalog", str), ("category", str), ("split", str), ("simulator", str),
        ("turns", int), ("episodes", int), ("seed", int), ("agents", dict), ("timing", dict),
    ):
        assert isinstance(results[key], kind), key
    assert results["turns"] == turns
    assert results["episodes"] == episodes
    assert sorted(results["agents"]) == sorted(agents)
    for name, summary in results["agents"].items():
        for metric in METRICS:
            values = summary[metric]
            assert len(values) == turns, (name, metric)
            assert all(0.0 <= v <= 100.0 for v in values), (name, metric, values)
            intervals = summary["ci95"][metric]
            assert len(intervals) == turns, (name, metric)
            assert all(low <= mean <= high for (low, high), mean in zip(intervals, values)), (name, metric)
    assert isinstance(results["timing"]["seconds"], float)
    assert results["timing"]["env_steps_per_second"] > 0


@pytest.mark.slow
def test_bench_tiny_end_to_end(tmp_path: Path) -> None:
    agents = ["transformer", "last_image", "random"]
    argv = [
        "--preset", "tiny", "--categories", "dress", "--num-items", "120", "--episodes", "12",
        "--simulator", "transformer", "--train-simulator", "template", "--decoding", "greedy",
        "--agents", *agents, "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
    ]
    assert main(argv) == 0

    results = json.loads((tmp_path / "run" / "results_dress.json").read_text())
    check_results_contract(results, agents, turns=5, episodes=12)
    assert results["simulator"] == "transformer (greedy)"
    assert results["train_simulator"] == "template"
    assert results["gallery"] == "whole val split"
    assert (tmp_path / "run" / "recall.png").stat().st_size > 0
    assert "| dress | transformer |" in (tmp_path / "run" / "results.md").read_text()
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    for folder in ("encoders", "captioners", "agents"):  # --cache-dir is the root of every cache
        assert any((tmp_path / "cache" / folder).iterdir()), folder


@pytest.mark.slow
def test_agent_results_independent_of_order(tmp_path: Path) -> None:
    # An agent must train to the same weights whether or not other agents trained before it.
    results = []
    for run, agent_names in enumerate((["transformer", "rnn"], ["rnn"])):
        argv = [
            "--preset", "tiny", "--categories", "dress", "--num-items", "100", "--episodes", "6",
            "--simulator", "template", "--agents", *agent_names,
            "--output-dir", str(tmp_path / f"run{run}"), "--cache-dir", str(tmp_path / f"cache{run}"),
        ]  # fmt: skip
        assert main(argv) == 0
        results.append(json.loads((tmp_path / f"run{run}" / "results_dress.json").read_text()))
    assert results[0]["agents"]["rnn"] == results[1]["agents"]["rnn"]


@pytest.mark.slow
def test_bench_second_run_uses_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    argv = [
        "--preset", "tiny", "--categories", "dress", "--num-items", "100", "--episodes", "6",
        "--simulator", "template", "--agents", "transformer", "random",
        "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
    ]
    assert main(argv) == 0
    first = json.loads((tmp_path / "run" / "results_dress.json").read_text())

    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    second = json.loads((tmp_path / "run" / "results_dress.json").read_text())

    assert "loaded agent transformer from cache" in caplog.text
    assert "training agent" not in caplog.text
    assert "reusing 6 start pairs" in caplog.text
    assert first["agents"] == second["agents"]


@pytest.mark.real_data
@pytest.mark.slow
def test_bench_fashion_iq_layout(tmp_path: Path, fashion_iq_root: Path) -> None:
    """Real caption and split files with a generated stand-in image folder for part of the dress ASINs."""
    from fiq_env.catalog import make_catalog

    split_files = {split: json.loads((fashion_iq_root / "image_splits" / f"split.dress.{split}.json").read_text()) for split in ("train", "val")}
    captions = json.loads((fashion_iq_root / "captions" / "cap.dress.val.json").read_text())
    wanted = set(split_files["train"][:150]) | set(split_files["val"][:60])
    wanted |= {asin for pair in captions[:40] for asin in (pair["candidate"], pair["target"])}

    images = tmp_path / "images"
    images.mkdir()
    stand_in = make_catalog("synthetic", category="dress", num_items=max(100, len(wanted)), seed=3)
    for index, asin in enumerate(sorted(wanted)):
        stand_in.load_image(index).save(images / f"{asin}.jpg", quality=85)

    agents = ["last_image", "random", "transformer"]
    argv = [
        "--catalog", "fashion_iq", "--root", str(fashion_iq_root), "--image-dir", str(images),
        "--categories", "dress", "--preset", "tiny", "--simulator", "replay", "--episodes", "10",
        "--agents", *agents, "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
    ]
    # Without attribute labels or pretrained weights the encoder's features are meaningless.
    # The run must warn about that and still complete the layout check end to end.
    with pytest.warns(UserWarning, match="no attribute labels"):
        assert main(argv) == 0

    results = json.loads((tmp_path / "run" / "results_dress.json").read_text())
    check_results_contract(results, agents, turns=5, episodes=10)
    assert results["catalog"] == "fashion_iq"
    assert results["gallery_size"] <= len(wanted)


def test_summarize_ranks_values() -> None:
    ranks = np.array([[0, 0], [20, 60], [100, 5]])
    summary = summarize_ranks(ranks, gallery_size=200)
    assert summary["recall@10"] == pytest.approx([100 / 3, 200 / 3], abs=1e-3)
    assert summary["recall@50"] == pytest.approx([200 / 3, 200 / 3], abs=1e-3)
    assert summary["percentile"][0] == pytest.approx(100 * (1 + 0.9 + 0.5) / 3, abs=1e-3)


def test_summarize_ranks_rejects_flat_input() -> None:
    with pytest.raises(ValueError, match="episodes, turns"):
        summarize_ranks(np.array([1, 2, 3]), gallery_size=10)


def test_markdown_table_shape() -> None:
    summary = summarize_ranks(np.array([[0, 3, 0, 0, 0], [40, 30, 20, 10, 2]]), gallery_size=100)
    table = markdown_table({"dress": {"turns": 5, "agents": {"transformer": summary}}})
    lines = table.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].count("|") == 9


def test_unwritable_output_reports_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = [
        "--preset", "tiny", "--categories", "dress", "--num-items", "100", "--episodes", "4",
        "--simulator", "template", "--agents", "random",
        "--output-dir", str(blocker / "run"), "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "fiq-bench: error:" in error
    assert "writable" in error


def test_parser_expands_home_in_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = config_from_args(build_parser().parse_args(["--output-dir=~/out", "--cache-dir=~/cache"]))
    assert config.output_dir == str(tmp_path / "out")
    assert config.cache_dir == str(tmp_path / "cache")


def test_parser_defaults_keep_config_defaults() -> None:
    config = config_from_args(build_parser().parse_args([]))
    assert config == BenchConfig()


def test_parser_overrides_lists_and_ints() -> None:
    config = config_from_args(build_parser().parse_args(["--agents", "random", "rnn", "--episodes", "7"]))
    assert config.agents == ("random", "rnn")
    assert config.episodes == 7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"turns": 0}, "turns must be at least 1"),
        ({"episodes": 0}, "episodes must be at least 1"),
        ({"gallery": "everything"}, "gallery must be"),
        ({"decoding": "sample"}, "decoding must be"),
        ({"catalog": "fashion_iq"}, "needs --root"),
    ],
)
def test_config_rejects_invalid_values(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BenchConfig(**overrides)


def test_bench_unknown_agent_exits_with_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "--preset", "tiny", "--categories", "dress", "--num-items", "100", "--episodes", "4",
        "--simulator", "template", "--agents", "transformr",
        "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
    ]
    assert main(argv) == 2
    assert "Did you mean 'transformer'" in capsys.readouterr().err


def test_start_pairs_reject_other_catalog(tmp_path: Path) -> None:
    from benchmarks.start_pairs import load_or_draw
    from fiq_env.catalog import make_catalog

    path = tmp_path / "pairs.json"
    load_or_draw(path, make_catalog("synthetic", category="dress", num_items=100, seed=0), "val", 5, seed=0)
    with pytest.raises(DataError, match="were drawn for catalog"):
        load_or_draw(path, make_catalog("synthetic", category="dress", num_items=100, seed=1), "val", 5, seed=0)


@pytest.mark.slow
def test_bench_scores_saved_sb3_model(tmp_path: Path) -> None:
    import simulators
    from agents.rl import PPOConfig, train_ppo
    from benchmarks import components

    common = [
        "--preset", "tiny", "--categories", "dress", "--num-items", "100", "--episodes", "6",
        "--simulator", "template", "--cache-dir", str(tmp_path / "cache"),
    ]
    assert main([*common, "--agents", "transformer", "--output-dir", str(tmp_path / "first")]) == 0
    retriever_path = next((tmp_path / "cache" / "agents").glob("transformer-dress-*/agent"))

    config = config_from_args(build_parser().parse_args(common))
    catalog = components.build_catalog(config, "dress")
    features = components.build_features(catalog, config)
    simulator = simulators.make("template", catalog=catalog)
    ppo_config = PPOConfig.from_preset("tiny", top_k=4)
    train_ppo(retriever_path, tmp_path / "ppo", ppo_config, save_zip=True, catalog=catalog, features=features, simulator=simulator)
    model_path = str(tmp_path / "ppo" / "ppo_model.zip")

    assert main([*common, "--agents", model_path, "random", "--output-dir", str(tmp_path / "second")]) == 0
    results = json.loads((tmp_path / "second" / "results_dress.json").read_text())
    check_results_contract(results, [model_path, "random"], turns=5, episodes=6)


def test_start_pairs_redraw_when_not_strict(tmp_path: Path) -> None:
    from benchmarks.start_pairs import load_or_draw
    from fiq_env.catalog import make_catalog

    catalog = make_catalog("synthetic", category="dress", num_items=100, seed=0)
    path = tmp_path / "pairs.json"
    load_or_draw(path, catalog, "val", 5, seed=0)
    longer = load_or_draw(path, catalog, "val", 8, seed=0, strict=False)
    assert len(longer) == 8


def test_start_pairs_strict_rejects_short_file(tmp_path: Path) -> None:
    from benchmarks.start_pairs import load_or_draw
    from fiq_env.catalog import make_catalog

    catalog = make_catalog("synthetic", category="dress", num_items=100, seed=0)
    path = tmp_path / "pairs.json"
    load_or_draw(path, catalog, "val", 5, seed=0)
    with pytest.raises(DataError, match="holds 5 start pairs"):
        load_or_draw(path, catalog, "val", 8, seed=0)


def test_start_pairs_reject_non_object(tmp_path: Path) -> None:
    from benchmarks.start_pairs import load_or_draw
    from fiq_env.catalog import make_catalog

    path = tmp_path / "pairs.json"
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="not a start-pair file"):
        load_or_draw(path, make_catalog("synthetic", category="dress", num_items=100, seed=0), "val", 5, seed=0)


def test_config_rejects_unknown_split() -> None:
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        BenchConfig(split="validation")
