"""Small real PyTorch trainers reproducing the lab's regressions (Baseline vs Run 11, E4 vs E5).

`python -m bisect_runs.demo.speech` and `python -m bisect_runs.demo.mdn` follow the trainer
contract of bisect-runs; see docs/demo.md. Only these trainers need torch.
"""
