"""The baseline: a plain, hand-written TRL SFTTrainer + PEFT LoRA script, as a user would write it.

    python bench/baseline_trl.py MODEL_DIR TRAIN_JSONL OUT_DIR '{"max_steps": 40, ...}'

Prints one JSON line: tokens, train_runtime, first_step_unix. Settings mirror the lora-tiny recipe.
"""

import json
import sys
import time

from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

model_dir, train_file, out_dir, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])


class FirstStep(TrainerCallback):
    at = None

    def on_step_end(self, args, state, control, **kwargs):
        if FirstStep.at is None:
            FirstStep.at = time.time()


tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
model = get_peft_model(model, LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=0.0,
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"], task_type="CAUSAL_LM"))
dataset = load_dataset("json", data_files=train_file, split="train")
args = SFTConfig(
    output_dir=out_dir,
    max_steps=settings["max_steps"],
    per_device_train_batch_size=settings["micro_batch_size"],
    learning_rate=settings["lr"],
    lr_scheduler_type="cosine",
    optim="adamw_torch",
    # TRL's SFTConfig defaults are gradient_checkpointing=True and bf16=True; the run being compared uses
    # neither (fp32 on CPU, no recomputation), so the baseline states the same settings explicitly.
    gradient_checkpointing=False,
    bf16=False,
    max_length=settings["seq_len"],
    assistant_only_loss=True,
    include_num_input_tokens_seen="non_padding",
    logging_steps=1,
    save_strategy="no",
    report_to=[],
    seed=42,
    use_cpu=True,
)
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                     callbacks=[FirstStep()])
result = trainer.train()
print(json.dumps({"tokens": int(trainer.state.num_input_tokens_seen), "train_runtime": result.metrics["train_runtime"],
                  "first_step_unix": FirstStep.at, "final_loss": trainer.state.log_history[-2].get("loss")}))
