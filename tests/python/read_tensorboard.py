"""Reads a run's TensorBoard event files with TensorBoard's own reader and prints them as
JSON, for the e2e test that compares them with metrics.jsonl.

Usage: read_tensorboard.py DIR

Prints {"files": N, "scalars": {tag: [[step, value], ...]}, "texts": {tag: [[step, text]]},
"duplicates": [[tag, step], ...]}. Every event file of DIR is read in name order with
`EventFileLoader`, the loader TensorBoard's backend uses (it migrates `simple_value`
summaries into the scalars plugin's tensors, so a value that reaches "scalars" here is one
TensorBoard charts). Duplicates are (tag, step) pairs written more than once, which
TensorBoard's UI would hide by purging but other readers would not.
"""

import json
import os
import sys

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util


def main(directory):
    files = sorted(f for f in os.listdir(directory) if "tfevents" in f)
    scalars, texts, seen, duplicates = {}, {}, set(), []
    for name in files:
        for event in EventFileLoader(os.path.join(directory, name)).Load():
            for value in event.summary.value:
                key = (value.tag, event.step)
                if key in seen:
                    duplicates.append(list(key))
                seen.add(key)
                plugin = value.metadata.plugin_data.plugin_name
                array = tensor_util.make_ndarray(value.tensor)
                if plugin == "scalars":
                    scalars.setdefault(value.tag, []).append([event.step, float(array)])
                elif plugin == "text":
                    text = array.reshape(-1)[0].decode("utf-8")
                    texts.setdefault(value.tag, []).append([event.step, text])
    print(json.dumps({"files": len(files), "scalars": scalars, "texts": texts,
                      "duplicates": duplicates}))


if __name__ == "__main__":
    main(sys.argv[1])
