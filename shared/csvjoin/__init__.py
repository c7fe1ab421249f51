"""The streamed join of Azure ML's predictions onto the input rows, without holding either file in memory.

join      the join itself: blocks of input rows, each with its run of predictions
blocks    bytes cut into blocks of whole lines; plain blocks joined as bytes, the rest by the csv module
predictions  Azure ML's `row,prediction,file_name` file in batches, and the in-order merge
index     predictions out of row order, bucketed in a temporary file
parts     the predictions of a sharded input (a folder of part files) as the whole input's rows
"""

from shared.csvjoin.index import PredictionIndex
from shared.csvjoin.join import JoinObserver, JoinStats, join_predictions, prediction_column
from shared.csvjoin.parts import PartPredictionStream, parse_part_predictions
from shared.csvjoin.predictions import Prediction, PredictionsOutOfOrder, PredictionStream, parse_predictions

__all__ = [
    "JoinObserver",
    "JoinStats",
    "PartPredictionStream",
    "Prediction",
    "PredictionIndex",
    "PredictionStream",
    "PredictionsOutOfOrder",
    "join_predictions",
    "parse_part_predictions",
    "parse_predictions",
    "prediction_column",
]
