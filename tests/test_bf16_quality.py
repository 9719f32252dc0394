"""Quality guard for bf16 autocast training (issue: fast training must not cost quality).

The same small GPT is trained twice on the world corpus from the same seed and data,
once in fp32 and once with bf16 autocast (fp32 master weights, fp32 softmax/loss/norm
statistics); the bf16 run's final validation loss must be within 2% of the fp32 run's.
"""

from __future__ import annotations

import pytest
import torch

from lmforge.config import load_recipe, resolve_recipe_path
from lmforge.pretrain import pretrain

SMALL = ["data.world_train_sentences=20000", "data.world_eval_sentences=200",
         "tokenizer.vocab_size=512", "model.n_layer=2", "model.d_model=96", "model.n_head=2",
         "model.n_kv_head=2", "train.max_steps=400", "train.eval_every=400",
         "train.ckpt_every=400", "train.warmup_steps=20", "train.device=cpu",
         "train.eval_batches=20", "sample.prompts=[]"]


@pytest.mark.slow
@pytest.mark.alone
def test_bf16_training_reaches_the_fp32_val_loss_within_2_percent(tmp_path):
    torch.set_num_threads(2)
    losses = {}
    for precision in ("fp32", "bf16"):
        recipe = load_recipe(resolve_recipe_path("quickstart"),
                             [f"run.out_dir={tmp_path / precision}", *SMALL,
                              f"train.precision={precision}"])
        result = pretrain(recipe, show_progress=False, log=lambda _m: None)
        losses[precision] = result.train.final_val_loss
    print(f"val loss fp32 {losses['fp32']:.4f}, bf16 {losses['bf16']:.4f}")
    assert abs(losses["bf16"] - losses["fp32"]) / losses["fp32"] < 0.02, losses
