"""The MDN demo trainer: E4/E5 keys, slot-ID modes, evaluation, the trainer contract end to end."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")  # the demos train PyTorch models: skip, not error, without it

from bisect_runs.demo import mdn  # noqa: E402
from bisect_runs.demo.contract import Options, flatten, read_config  # noqa: E402
from bisect_runs.demo.synthetic import MdnSpec, make_mdn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
LAB_LINE = re.compile(r"^Step (\d+): val_nll=([\d.]+) \(best=([\d.]+)\) \| train:[\d.]+ s/s \| int:[\d.]+ s/s \| elapsed=[\d.]+m \| stale=\d+/\d+$")


def config(name: str) -> mdn.MdnConfig:
    path = CONFIGS / name
    return mdn.mdn_config(Options(flatten(read_config(path)), path))


def run_trainer(config_path: Path, run_dir: Path, steps: int, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bisect_runs.demo.mdn", "--config", str(config_path), "--run-dir", str(run_dir),
           "--steps", str(steps), "--seed", "0", "--scale", "tiny", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_e4_and_e5_keys_are_read_from_the_directories() -> None:
    e4, e5 = config("e4"), config("e5")
    assert (e4.slot_id_mode, e4.use_aux_loss, e4.aux_loss_weight, e4.batch_size, e4.patience) == ("permute_per_batch", True, 0.1, 512, 2000)
    assert (e4.aux_loss_diagonal, e4.perm_warmup_steps, e4.eval_slot_id_mode, e4.eval_perm_average) == (False, 0, "same_as_train", 1)
    assert (e5.aux_loss_diagonal, e5.perm_warmup_steps, e5.eval_slot_id_mode, e5.eval_perm_average, e5.patience) == (True, 2000, "fixed", 5, 10000)


def test_defaults_file_agrees_with_the_trainer() -> None:
    defaults = yaml.safe_load((CONFIGS / "mdn_defaults.yaml").read_text())
    empty = mdn.mdn_config(Options({}, Path("empty")))
    for key, value in defaults.items():
        assert getattr(empty, key.split(".", 1)[1]) == value, key


def test_slot_id_modes() -> None:
    gen = torch.Generator().manual_seed(0)
    fixed = mdn.slot_ids("fixed", 3, 5, gen)
    assert fixed.tolist() == [list(range(5))] * 3
    batch = mdn.slot_ids("permute_per_batch", 3, 5, gen)
    assert sorted(batch[0].tolist()) == list(range(5)) and (batch == batch[0]).all()
    sample = mdn.slot_ids("permute_per_sample", 64, 5, gen)
    assert all(sorted(row) == list(range(5)) for row in sample.tolist())
    assert len({tuple(row) for row in sample.tolist()}) > 1


def test_eval_assignments_follow_the_eval_keys() -> None:
    e4, e5 = config("e4"), config("e5")
    assert mdn.eval_assignments(e4, 8) == [None]  # drawn afresh on each batch, as the lab's E4 did
    perms = mdn.eval_assignments(e5, 8)
    assert len(perms) == 5 and perms[0] is not None and perms[0].tolist() == list(range(8))
    again = mdn.eval_assignments(e5, 8)
    assert all(torch.equal(a, b) for a, b in zip(perms, again, strict=True))  # type: ignore[arg-type]


def test_fixed_eval_is_deterministic_and_same_as_train_is_not() -> None:
    spec = MdnSpec(n_slots=8, train_size=16, val_size=64)
    _, val = make_mdn(spec, 0)
    e5 = config("e5")
    torch.manual_seed(0)
    model = mdn.SetMdn(e5, 16, 1, 2, 8)
    cpu = torch.device("cpu")
    assert mdn.evaluate(model, val, e5, 32, cpu, False) == mdn.evaluate(model, val, e5, 32, cpu, False)
    e4 = config("e4")
    noisy = {mdn.evaluate(model, val, e4, 32, cpu, False) for _ in range(3)}
    assert len(noisy) > 1


def test_mixture_nll_of_a_known_gaussian() -> None:
    # one component (logits 0, mean 0, log sd 0) of an 8-way mixture with equal weights and equal parameters
    params = torch.zeros(1, 3 * 8)
    expected = 0.5 * math.log(2 * math.pi)  # -log N(0; 0, 1)
    assert float(mdn.mixture_nll(params, torch.zeros(1))) == pytest.approx(expected)


def test_aux_loss_diagonal_uses_only_self_terms() -> None:
    contrib = torch.tensor([[1.0, 2.0]])
    aux = torch.tensor([[[1.0, 0.0], [0.0, 4.0]]])  # right on the diagonal, wrong off it
    assert float(mdn.aux_loss(aux, contrib, diagonal=True)) == 0.0
    assert float(mdn.aux_loss(aux, contrib, diagonal=False)) == pytest.approx((2.0**2 * 2) / 4)


def test_the_diagonal_aux_loss_is_summed_over_slots_and_the_full_one_averaged() -> None:
    contrib = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    zero = torch.zeros(2, 2, 2)
    assert float(mdn.aux_loss(zero, contrib, diagonal=True)) == pytest.approx(((1 + 16) + (0 + 1)) / 2)
    assert float(mdn.aux_loss(zero, contrib, diagonal=False)) == pytest.approx(((1 + 4 + 4 + 16) + 1) / 8)


@pytest.mark.parametrize("name", ["e4", "e5"])
def test_twenty_steps_write_well_formed_metrics_and_the_lab_line(tmp_path: Path, name: str) -> None:
    done = run_trainer(CONFIGS / name, tmp_path / "run", 20, "--eval-every", "10")
    assert done.returncode == 0, done.stderr
    rows = records(tmp_path / "run")
    assert [r["step"] for r in rows] == [10, 20]
    for r in rows:
        assert set(r) >= {"step", "val_nll", "best_val_nll", "train_loss", "lr", "grad_norm", "train_steps_per_s", "eval_s"}
        assert math.isfinite(r["val_nll"]) and r["best_val_nll"] <= r["val_nll"] + 1e-12
    lines = [m for m in map(LAB_LINE.match, done.stdout.splitlines()) if m]
    assert [int(m.group(1)) for m in lines] == [10, 20]
    assert float(lines[-1].group(2)) == pytest.approx(rows[-1]["val_nll"], abs=1e-4)


def test_patience_stops_early(tmp_path: Path) -> None:
    data = flatten(read_config(CONFIGS / "e4"))
    data.update({"train.patience": 1, "train.lr": 0.0})  # no learning: never improves after the first eval
    (tmp_path / "cfg").mkdir()
    for part in ("model", "train", "eval"):
        part_data = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith(part + ".")}
        (tmp_path / "cfg" / f"{part}.yaml").write_text(yaml.safe_dump(part_data))
    done = run_trainer(tmp_path / "cfg", tmp_path / "run", 40, "--eval-every", "5")
    assert done.returncode == 0, done.stderr
    assert records(tmp_path / "run")[-1]["step"] < 40
    assert "Early stop" in done.stdout


def test_the_mdn_project_file_searches_the_five_differences_of_the_demo_page() -> None:
    from bisect_runs.diff import diff_configs
    from bisect_runs.project import load_project, make_settings
    from bisect_runs.sources import load_config

    settings = make_settings(load_project(ROOT / "mdn.bisect.yaml"), {})
    assert (settings.metric, settings.mode, settings.steps) == ("val_nll", "min", 600)
    good, bad = (load_config(settings.config_spec(c) or "") for c in (settings.good, settings.bad))
    result = diff_configs(good, bad, settings.diff_options())
    assert sorted(d.key for d in result.differences) == ["eval.eval_perm_average", "eval.eval_slot_id_mode",
                                                        "model.aux_loss_diagonal", "train.patience", "train.perm_warmup_steps"]


@pytest.mark.slow
def test_e5_is_worse_than_e4_beyond_seed_noise_because_of_its_diagonal_aux_loss(tmp_path: Path) -> None:
    """At the budget of docs/demo.md's MDN search, E5 regresses on every seed, and E5 with only
    `aux_loss_diagonal` put back to E4's value recovers (checked by training, not by the search)."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "e5-reverted").mkdir()
    for part in ("model", "train", "eval"):
        data = yaml.safe_load((CONFIGS / "e5" / f"{part}.yaml").read_text())
        data.pop("aux_loss_diagonal", None)  # E4 lacks the key: the trainer's default, false
        (tmp_path / "e5-reverted" / f"{part}.yaml").write_text(yaml.safe_dump(data))
    arms = {"e4": CONFIGS / "e4", "e5": CONFIGS / "e5", "reverted": tmp_path / "e5-reverted"}
    jobs = [(arm, seed) for arm in arms for seed in (0, 1)]

    def last_nll(job: tuple[str, int]) -> float:
        arm, seed = job
        run_dir = tmp_path / f"{arm}-{seed}"
        cmd = [sys.executable, "-m", "bisect_runs.demo.mdn", "--config", str(arms[arm]), "--run-dir", str(run_dir),
               "--steps", "600", "--seed", str(seed), "--scale", "tiny", "--eval-every", "100"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return float(records(run_dir)[-1]["val_nll"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        values = dict(zip(jobs, pool.map(last_nll, jobs), strict=True))
    nll = {arm: [values[(arm, s)] for s in (0, 1)] for arm in arms}
    assert max(nll["e4"]) < 0.45, nll  # E4 learns (0.30 to 0.34 at 600 steps in docs/demo.md)
    assert min(nll["e5"]) > max(nll["e4"]) + 0.1, nll
    assert max(nll["reverted"]) < min(nll["e5"]) - 0.1, nll


def test_absurd_learning_rate_is_logged_as_non_finite(tmp_path: Path) -> None:
    (tmp_path / "train.yaml").write_text("lr: 1.0e+12\nbatch_size: 64\n")
    done = run_trainer(tmp_path, tmp_path / "run", 60, "--eval-every", "10")
    assert done.returncode == 0, done.stderr
    last = records(tmp_path / "run")[-1]
    assert last.get("diverged") is True
    assert not math.isfinite(last["val_nll"])
