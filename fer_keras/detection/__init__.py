"""The detection task's wing (`task: detection`): every face detector behind one interface (`faces.py`), one module
per trainable architecture with all of its roles (`retinanet_run.py`, `yunet_run.py`), and the task's run-life roles
(`train.py`, `evaluate.py`, `figures.py`, `export.py`), over the shared engine."""
