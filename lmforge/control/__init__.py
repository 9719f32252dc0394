"""Controlled generation: control codes prepended in training (:mod:`.codes`), the
``task: control`` recipe (:mod:`.recipe`), and its training and exact evaluation by the
world's rules (:mod:`.finetune`)."""
