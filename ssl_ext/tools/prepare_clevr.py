"""CLEVR scene JSON -> VISSL filelists for the VTAB tasks CLEVR/Count and CLEVR/Dist.

    ssl-ext-run prepare-clevr --input /data/CLEVR_v1.0 --task count --output ~/datasets/clevr_count
    ssl-ext-run prepare-clevr --input /data/CLEVR_v1.0 --task distance --output ~/datasets/clevr_dist

Label definitions of VTAB (Zhai et al. 2019, "A Large-scale Study of
Representation Learning with the Visual Task Adaptation Benchmark",
arXiv:1910.04867), which VISSL's CLEVR benchmarks use:

* ``count`` (count_all): the number of objects minus 3; CLEVR scenes hold 3 to 10
  objects, so 8 classes;
* ``distance`` (closest_object_distance): the depth of the closest object, the
  smallest ``pixel_coords[2]`` of the scene, binned at 0, 8, 8.5, 9, 9.5, 10 and
  100: the label is the index of the last threshold below the depth, 6 classes.

``<input>`` is the CLEVR_v1.0 folder: ``scenes/CLEVR_{train,val}_scenes.json`` and
``images/{train,val}/<image_filename>``. CLEVR's train scenes give ``train``, its val
scenes ``val`` (CLEVR's test scenes are not public).
"""
import argparse
import bisect
import json
import os
import sys


from ssl_ext.tools.prepare_common import PrepareError, require, run, summarize, write_classes, write_filelist

COUNT_OFFSET, COUNT_CLASSES = 3, 8
DISTANCE_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)


def count_label(scene):
    label = len(scene["objects"]) - COUNT_OFFSET
    if not 0 <= label < COUNT_CLASSES:
        raise PrepareError(f"scene {scene.get('image_filename')}: {len(scene['objects'])} objects; VTAB's count task expects 3 to 10")
    return label


def distance_label(scene):
    if not scene["objects"]:
        raise PrepareError(f"scene {scene.get('image_filename')} has no objects, so no closest-object distance")
    depth = min(float(o["pixel_coords"][2]) for o in scene["objects"])
    label = bisect.bisect_left(DISTANCE_THRESHOLDS, depth) - 1  # last threshold strictly below the depth
    if not 0 <= label < len(DISTANCE_THRESHOLDS) - 1:
        raise PrepareError(f"scene {scene.get('image_filename')}: closest depth {depth} is outside VTAB's bins {DISTANCE_THRESHOLDS}")
    return label


TASKS = {
    "count": (count_label, [str(n) for n in range(COUNT_OFFSET, COUNT_OFFSET + COUNT_CLASSES)]),
    "distance": (distance_label, [f"{lo}-{hi}" for lo, hi in zip(DISTANCE_THRESHOLDS, DISTANCE_THRESHOLDS[1:])]),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="the CLEVR_v1.0 folder")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    label_fn, class_names = TASKS[args.task]
    labels = {}
    for split in ("train", "val"):
        scenes_path = require(os.path.join(args.input, "scenes", f"CLEVR_{split}_scenes.json"), "scene file")
        with open(scenes_path) as f:
            try:
                scenes = json.load(f).get("scenes")
            except (json.JSONDecodeError, AttributeError) as exc:
                raise PrepareError(f"{scenes_path} is not a CLEVR scene file: {exc}") from None
        if not scenes:
            raise PrepareError(f"{scenes_path} has no 'scenes' list")
        image_dir = os.path.join(args.input, "images", split)
        paths = [os.path.join(image_dir, s["image_filename"]) for s in scenes]
        labels[split] = [label_fn(s) for s in scenes]
        write_filelist(args.output, split, paths, labels[split])
    write_classes(args.output, class_names)
    return summarize(args.output, labels)


def command(argv=None) -> int:
    """The command line: print the summary, or a one-line error and exit status 2."""
    return run(main, argv)


if __name__ == "__main__":
    sys.exit(command())
