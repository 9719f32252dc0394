"""Tasks: a task is a data format, a head, a loss, a metric and a predictor, trained by
the same :class:`~lmforge.train.Trainer` as pretraining."""
