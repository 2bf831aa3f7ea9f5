#!/usr/bin/env python3
"""Convert the metrics.jsonl of Tessera runs into TensorBoard event files.

    python3 tools/metrics_to_tensorboard.py RUN_DIR [RUN_DIR ...] [--out DIR]
    tensorboard --logdir runs
    python3 tools/metrics_to_tensorboard.py --self-test

Every numeric key of a metrics line except epoch and step becomes a scalar at that line's step:
`val_*` keys as `val/<rest>` (val_top1 -> val/top1), the others as `train/<key>` (train/loss,
train/lr, train/loss_align, ...). Nulls (non-finite values) are left out; lines that are not a
JSON object with an integer step (a run killed mid-write) are skipped and counted. metrics.jsonl
has no time stamps, so every event carries the file's modification time.

Events go to RUN_DIR/tensorboard/, or with --out to DIR/<run>, <run> being the run directory's
path below the runs' common parent (its name, for a single run). The file is named
events.out.tfevents.*.tessera; converting again replaces the earlier such files there and touches
nothing else. Needs the tensorboard package (pip install tensorboard).
"""
import argparse
import glob
import json
import math
import os
import tempfile

try:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
except ImportError:
    raise SystemExit("error: needs the tensorboard package (pip install tensorboard)")

SUFFIX = ".tessera"


def tag(key):
    return "val/" + key[len("val_"):] if key.startswith("val_") else "train/" + key


def read_metrics(path):
    """([(step, {tag: value})], lines skipped, nulls left out) of one metrics.jsonl."""
    records, skipped, nulls = [], 0, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            step = obj.get("step") if isinstance(obj, dict) else None
            if not isinstance(step, int) or isinstance(step, bool):
                skipped += 1
                continue
            scalars = {}
            for key, value in obj.items():
                if key in ("epoch", "step"):
                    continue
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if number and math.isfinite(value):
                    scalars[tag(key)] = float(value)
                elif value is None or number:   # Tessera's null, or a NaN/Infinity another writer left
                    nulls += 1
            records.append((step, scalars))
    return records, skipped, nulls


def convert(run, out_dir):
    metrics = os.path.join(run, "metrics.jsonl")
    records, skipped, nulls = read_metrics(metrics)
    wall_time = os.path.getmtime(metrics)
    earlier = glob.glob(os.path.join(glob.escape(out_dir), "events.out.tfevents.*" + SUFFIX))
    writer = EventFileWriter(out_dir, filename_suffix=SUFFIX)
    for step, scalars in records:
        values = [summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in scalars.items()]
        writer.add_event(event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=values)))
    writer.close()
    for path in earlier:   # only once the new file is complete
        os.remove(path)
    written = sum(len(scalars) for _, scalars in records)
    left_out = f", {nulls} null values left out" if nulls else ""
    print(f"{run}: {len(records)} lines, {written} scalars -> {out_dir} ({skipped} lines skipped{left_out})")
    return records, skipped


def output_dirs(runs, out):
    if out is None:
        return [os.path.join(run, "tensorboard") for run in runs]
    full = [os.path.abspath(run) for run in runs]
    parent = os.path.commonpath([os.path.dirname(p) for p in full])
    return [os.path.join(out, os.path.relpath(p, parent)) for p in full]


def self_test():
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lines = [
        '{"epoch": 0, "step": 10, "lr": 0.0001, "loss": 0.9, "loss_main": 0.8, "loss_align": 0.1, "grad_norm": 0.5, '
        '"images_per_s": 30.5, "data_wait": 0.01}',
        '{"epoch": 0, "step": 20, "lr": 0.0002, "loss": null, "loss_main": 0.7, "loss_align": 0.05, "grad_norm": null, '
        '"images_per_s": 31.0, "data_wait": 0.02}',
        '{"epoch": 1, "step": 30, "lr": 0.00015, "loss": 0.6, "loss_ma',
        '{"epoch": 1, "step": 40, "lr": 0.0001, "loss": 0.5, "loss_main": 0.45, "loss_align": 0.05, "grad_norm": 0.4, '
        '"images_per_s": 29.0, "data_wait": 0.0}',
        '{"epoch": 1, "step": 40, "val_top1": 71.55, "val_top5": 98.8, "val_loss": 0.802084}',
    ]
    expected = {}
    for line in lines[:2] + lines[3:]:
        obj = json.loads(line)
        for key, value in obj.items():
            if key not in ("epoch", "step") and value is not None:
                expected.setdefault(tag(key), []).append((obj["step"], value))

    with tempfile.TemporaryDirectory(prefix="metrics_to_tensorboard_") as tmp:
        run = os.path.join(tmp, "runs", "demo")
        os.makedirs(os.path.join(run, "tensorboard"))
        with open(os.path.join(run, "metrics.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
        foreign = os.path.join(run, "tensorboard", "notes.txt")
        with open(foreign, "w") as f:
            f.write("not ours\n")
        before = sorted(os.listdir(run))

        for out in (None, os.path.join(tmp, "tb")):
            (target,) = output_dirs([run], out)
            for _ in range(2):   # the second conversion must replace the first one's file
                records, skipped = convert(run, target)
            assert (len(records), skipped) == (4, 1), (len(records), skipped)
            assert len(glob.glob(os.path.join(target, "events.out.tfevents.*" + SUFFIX))) == 1, os.listdir(target)
            events = EventAccumulator(target, size_guidance={"scalars": 0})
            events.Reload()
            assert sorted(events.Tags()["scalars"]) == sorted(expected), events.Tags()["scalars"]
            for name, want in expected.items():
                got = [(e.step, e.value) for e in events.Scalars(name)]
                assert [s for s, _ in got] == [s for s, _ in want], (name, got, want)
                assert all(math.isclose(g, w, rel_tol=1e-6) for (_, g), (_, w) in zip(got, want)), (name, got, want)
        assert target == os.path.join(tmp, "tb", "demo"), target
        assert sorted(os.listdir(run)) == before and os.path.exists(foreign), os.listdir(run)
    print("ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directory holding metrics.jsonl")
    parser.add_argument("--out", metavar="DIR", help="write DIR/<run>/ instead of RUN_DIR/tensorboard/")
    parser.add_argument("--self-test", action="store_true", help="convert a made-up run, read it back, print ok")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    if not args.runs:
        parser.error("give at least one RUN_DIR (or --self-test)")
    for run in args.runs:
        if not os.path.isfile(os.path.join(run, "metrics.jsonl")):
            raise SystemExit(f"error: {run}: no metrics.jsonl")
    if len({os.path.realpath(run) for run in args.runs}) < len(args.runs):
        raise SystemExit("error: a run directory is given twice")
    for run, out_dir in zip(args.runs, output_dirs(args.runs, args.out)):
        convert(run, out_dir)


if __name__ == "__main__":
    main()
