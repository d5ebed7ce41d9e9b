"""The model families a schedule can name (`model bert-preln { ... }`). Torch-free; the one list the
schema, the plan and the runtime read. Adding a family is one line here plus its model (the
runtime's model and Hugging Face export)."""

from __future__ import annotations

FAMILIES: dict[str, str] = {
    "bert": "post-LN BERT encoder; exports as BertForMaskedLM",
    "bert-preln": "pre-LN encoder with a final LayerNorm; exports as RobertaPreLayerNormForMaskedLM",
}
