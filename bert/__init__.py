"""BERT fine-tuning and knowledge distillation on TensorFlow 2.

Modules are imported one by one (``from bert import modeling``); this package
file imports nothing so that, e.g., the tokenizer loads without TensorFlow.
"""
