#!/usr/bin/env python
"""Evaluate a trained model. Example: python evaluate_model.py --run runs/<name> --bootstrap 1000"""

from fer_keras.cli_evaluate import main

if __name__ == "__main__":
    main()
