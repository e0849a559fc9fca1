#!/usr/bin/env python
"""Train a multi-task facial expression model. Example: python train_model.py --model VGG16 --epochs 50"""

from fer_keras.cli_train import main

if __name__ == "__main__":
    main()
