#!/usr/bin/env python
"""Plots and an HTML report from a run directory. Example: python visualize_results.py --run runs/<name>"""

from fer_keras.cli_visualize import main

if __name__ == "__main__":
    main()
