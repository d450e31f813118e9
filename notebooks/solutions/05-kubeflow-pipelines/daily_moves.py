"""One answer to notebook 05's exercise: a step that writes the daily moves as a Dataset.

It reads the prices CSV that ``make_prices`` writes (columns ``day`` and ``close``) and
writes a CSV of its own: each day's move from the day before, in percent. Copy the
function into the answer cell, and set ``my_component = daily_moves`` below it.

Going further: add it to the notebook's pipeline, after ``make_prices``::

    moves = daily_moves(prices=made.outputs["prices"])
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output


@dsl.component(base_image="python:3.11-slim-bookworm")
def daily_moves(prices: Input[Dataset], moves: Output[Dataset]):
    """Each day's move of the close from the day before, in percent: one CSV row a day."""
    import csv

    with open(prices.path, newline="") as f:
        closes = [(int(row["day"]), float(row["close"])) for row in csv.DictReader(f)]
    with open(moves.path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["day", "move_pct"])
        for (_, before), (day, after) in zip(closes, closes[1:], strict=False):
            writer.writerow([day, round(100 * (after / before - 1), 3)])


my_component = daily_moves
