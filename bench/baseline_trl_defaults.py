"""The plain script a user writes from TRL's and PEFT's documentation: ``SFTTrainer`` + a LoRA ``LoraConfig``,
with TRL's documented defaults (batch 8, max_length 1024, gradient checkpointing on, no packing, loss on the
whole conversation) except precision, made equal to the compared run (fp32 on CPU: ``bf16=False``).

    python bench/baseline_trl_defaults.py MODEL_DIR TRAIN_JSONL OUT_DIR '{"epochs": 1, "r": 16, "alpha": 32}'

Prints one JSON line: tokens (non-padding, as the Trainer counts them), train_runtime, train_begin_unix,
first_step_unix.
"""

import json
import sys
import time

from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

model_dir, train_file, out_dir, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])


class Clock(TrainerCallback):
    begin = first = None

    def on_train_begin(self, args, state, control, **kwargs):
        Clock.begin = Clock.begin or time.time()

    def on_step_end(self, args, state, control, **kwargs):
        Clock.first = Clock.first or time.time()


tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
args = SFTConfig(
    output_dir=out_dir,
    num_train_epochs=settings["epochs"],
    bf16=False,  # precision made equal (fp32 on this CPU); everything else is TRL's default
    use_cpu=True,
    include_num_input_tokens_seen="non_padding",
    save_strategy="no",
    report_to=[],
)
trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, callbacks=[Clock()],
                     train_dataset=load_dataset("json", data_files=train_file, split="train"),
                     peft_config=LoraConfig(r=settings["r"], lora_alpha=settings["alpha"],
                                            target_modules="all-linear", task_type="CAUSAL_LM"))
result = trainer.train()
print(json.dumps({"tokens": int(trainer.state.num_input_tokens_seen), "train_runtime": result.metrics["train_runtime"],
                  "train_begin_unix": Clock.begin, "first_step_unix": Clock.first,
                  "steps": trainer.state.global_step}))
