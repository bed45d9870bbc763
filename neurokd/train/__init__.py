"""Training a student: the distillation loop and everything one run of it writes or reads.

Here: ``distillation`` (``distill(config) -> Result``), ``fitting`` (the epoch loop, resumable),
``evaluation`` (predictions, accuracies, firing rates), ``features`` (feature taps for feature
KD), ``distributed`` (torchrun), ``training_log`` (``--log-dir``), ``run_folder`` (one run, one
folder) and ``checkpoint`` (the run's own file format). A new training-time behaviour — a
regulariser's bookkeeping, a new evaluation — goes here; a new loss goes to ``neurokd.losses``.
"""
