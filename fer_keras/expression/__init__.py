"""The expression task's wing (`task: expression`): one module per role of a run's life, `train`, `evaluate`,
`figures` and `export`, each named in `fer_keras/tasks.py`, over the shared engine (config, run directory, fitting,
report shell, export dispatch)."""
