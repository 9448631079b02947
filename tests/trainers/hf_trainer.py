"""A Hugging Face `Trainer` script in the shape of transformers' run_clm.py: `HfArgumentParser` over dataclasses.

    python hf_trainer.py --learning_rate 3e-3 --max_steps 40 --output_dir RUN --n_embd 16 ...
    python hf_trainer.py args.json

As in the examples, one argument ending in `.json` is parsed with `parse_json_file`, anything
else as flags. A tiny GPT-2 (`GPT2Config`) learns sequences generated here (each continues a
random start by a fixed stride); the script prints the final `eval_loss = ...` with
`trainer.log_metrics` and saves it with `trainer.save_metrics`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)


@dataclass
class ModelArguments:
    n_layer: int = field(default=1, metadata={"help": "Transformer blocks."})
    n_embd: int = field(default=16, metadata={"help": "Embedding width."})
    n_head: int = field(default=2, metadata={"help": "Attention heads."})
    vocab_size: int = field(default=32, metadata={"help": "Tokens."})
    seq_len: int = field(default=16, metadata={"help": "Tokens per sequence."})
    train_sequences: int = field(default=512, metadata={"help": "Generated training sequences."})


class StrideSequences(torch.utils.data.Dataset):
    """Token sequences x[t+1] = x[t] + stride (mod vocab), stride one of three per sequence."""

    def __init__(self, n: int, vocab: int, length: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab, (n, 1), generator=g)
        stride = torch.tensor([1, 3, 5])[torch.randint(0, 3, (n, 1), generator=g)]
        self.ids = (start + stride * torch.arange(length)) % vocab

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main() -> None:
    parser = HfArgumentParser((ModelArguments, TrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, training_args = parser.parse_json_file(json_file=os.path.abspath(sys.argv[1]))
    else:
        model_args, training_args = parser.parse_args_into_dataclasses()
    set_seed(training_args.seed)
    config = GPT2Config(vocab_size=model_args.vocab_size, n_positions=model_args.seq_len, n_embd=model_args.n_embd,
                        n_layer=model_args.n_layer, n_head=model_args.n_head)
    model = GPT2LMHeadModel(config)
    m = model_args
    train = StrideSequences(m.train_sequences, m.vocab_size, m.seq_len, seed=training_args.seed)
    val = StrideSequences(128, m.vocab_size, m.seq_len, seed=10_000)
    trainer = Trainer(model=model, args=training_args, train_dataset=train, eval_dataset=val)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    main()
