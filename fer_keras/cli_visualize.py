"""`python visualize_results.py`: plots and an HTML report from run directories (never retrains)."""

from __future__ import annotations


from fer_keras.cli_common import CliParser
from fer_keras.errors import cli_main
from fer_keras.report import write_report


@cli_main
def main(argv=None):
    p = CliParser(prog="visualize_results.py", description=__doc__)
    p.add_argument("--run", help="run directory (default: the newest under --runs-dir)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="also plot the main metrics of several runs")
    p.add_argument("--out", help="with --compare: output folder (default: the first run's plots/)")
    a = p.parse_args(argv)
    report, sections = write_report(a.run, a.compare or (), a.out, a.runs_dir)
    for name, path in sections.items():
        print(f"{name}: {path}")
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
