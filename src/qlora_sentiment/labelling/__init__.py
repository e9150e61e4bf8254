"""Batch labelling, `qlora-sentiment predict`: the command (predict_command.py), its input files (textfiles.py),
its resumable outputs (output.py, progress.py, output_lock.py) and labelling with Ray workers (ray_labelling.py)."""
