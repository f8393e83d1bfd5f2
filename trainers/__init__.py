"""The zoo's trainer and evaluator.

- `python -m trainers.run`: train one registered model (train_lib.train).
- `python -m trainers.evaluate`: re-evaluate a workdir's newest weights.
- `trainers.checkpoints.load_model(name, checkpoint)`: a trained model back.
"""
