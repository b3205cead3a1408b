"""Load benchmark of whole calls (issue 6). Run `ivr bench` (or `python -m bench.run`); see bench/run.py,
the paths in bench/paths.py, the floor in bench/floor_app.py and the measured numbers in bench/RESULTS.md."""
