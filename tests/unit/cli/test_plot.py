"""The loss chart ``status RUN --plot`` draws, from a given history."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from autopilot.plot import loss_chart, mlflow_ui_command

FALLING = [{"step": float(s), "loss": 3.0 - s / 10} for s in range(1, 11)]


def test_a_falling_loss_starts_top_left_and_ends_bottom_right() -> None:
    lines = loss_chart(FALLING, width=20, height=5)
    rows = lines[:5]
    assert rows[0].startswith("2.900 ┤•") and rows[-1].startswith("2.000 ┤") and rows[-1].endswith("•")
    assert rows[2].startswith("2.450 ┤")  # the middle label
    assert lines[5] == "      └" + "─" * 20
    assert lines[6].split() == ["step", "1", "10"]
    assert lines[7].strip() == "• training loss"


def test_validation_points_have_their_own_mark_and_legend() -> None:
    history = [*FALLING, {"step": 5.0, "validation_loss": 2.8}, {"step": 10.0, "validation_loss": 2.5}]
    lines = loss_chart(history, width=20, height=5)
    assert sum(line.count("o") for line in lines[:5]) == 2
    assert lines[-1].strip() == "• training loss   o validation loss"


def test_a_flat_curve_and_a_single_point_still_draw() -> None:
    flat = loss_chart([{"step": 1.0, "loss": 1.0}, {"step": 2.0, "loss": 1.0}], width=10, height=5)
    assert flat[2].count("•") == 2  # in the middle row
    assert loss_chart([{"step": 3.0, "loss": 2.0}], width=10, height=3)[1].endswith("•")


def test_nothing_to_draw_without_a_loss() -> None:
    assert loss_chart([]) == []
    assert loss_chart([{"step": 1.0, "mean_token_accuracy": 0.4}]) == []


def test_the_mlflow_ui_command_names_the_store_without_its_connection_options() -> None:
    uri = "sqlite:////home/me/.autopilot/platform/mlflow.db?timeout=30"
    assert mlflow_ui_command(uri) == "mlflow ui --backend-store-uri sqlite:////home/me/.autopilot/platform/mlflow.db"


def test_the_demo_ends_with_the_png_the_plot_command_and_the_mlflow_ui_command(tmp_path: Path) -> None:
    from autopilot.demo import pictures

    settings = SimpleNamespace(workdir=tmp_path)
    record = SimpleNamespace(run_id="demo-1", loss_curve="/x/loss_curve.png")
    lines = [line.strip() for line in pictures(settings, record)]
    assert lines[0] == "loss curve: /x/loss_curve.png"
    assert lines[1] == "in the terminal: autopilot status demo-1 --plot"
    assert lines[2].startswith(f"runs, metrics and artifacts: mlflow ui --backend-store-uri sqlite:///{tmp_path}")
    assert "?" not in lines[2]
