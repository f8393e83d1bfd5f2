"""The zoo's trainer and evaluator.

- `python -m trainers.run`: train one registered model (train_lib.train).
- `python -m trainers.evaluate`: re-evaluate a workdir's newest weights.
- `trainers.checkpoints`: resumable training state and the final weights
  (loading them back is zoo.weights.load_model).
"""
