"""Tiny configurations of every built-in trunk and head, for fast CPU tests.

A new trunk or head plugin adds its entry here (timm-style: the parametrized
tests run over every registered name and fail for a name without an entry).
"""

TINY_TRUNKS = {
    # params, input channels, input sides to try (the first is the native one)
    "small_cnn": ({"in_channels": 1, "widths": [4, 8], "out_dim": 12}, 1, [8, 16, 64]),
    "resnet": ({"depth": 18, "cifar_stem": True, "in_channels": 3}, 3, [8, 16]),
    "vit": (
        {"preset": "custom", "embed_dim": 16, "depth": 2, "num_heads": 2, "patch_size": 4, "img_size": 16},
        3,
        [16, 8, 24],
    ),
    # The raw-pixel floor resizes to image_size (area when shrinking, bilinear when enlarging): 12 is native to none.
    "pixels": ({"in_channels": 3, "image_size": 12}, 3, [16, 8, 24]),
    # A 2-block ViT through timm: covers the timm trunk's masking and ViT layer paths.
    "timm": (
        {
            "model_name": "vit_tiny_patch16_224",
            "img_size": 16,
            "model_kwargs": {"patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2},
        },
        3,
        [16, 8, 24],
    ),
}

# Layer of ``extract_layers`` that equals ``forward`` (the pooled trunk output).
FINAL_LAYER = {"small_cnn": "stage3", "resnet": "res5", "vit": "cls_last1", "pixels": "pixels", "timm": "pooled"}

TINY_HEADS = {
    "mlp": {"dims": [10, 6]},
    "msn_projector": {"hidden_dim": 10, "out_dim": 6},
    "dino_head": {"out_dim": 9, "hidden_dim": 10, "bottleneck_dim": 4},
    "mae_decoder": {"img_size": 8, "patch_size": 4, "in_channels": 1, "decoder_dim": 8, "depth": 1, "num_heads": 2},
}


def tiny_trunk_spec(name):
    if name not in TINY_TRUNKS:
        raise AssertionError(f"Add a tiny configuration of trunk {name!r} to tests/models/tiny_model_specs.py")
    params, channels, sizes = TINY_TRUNKS[name]
    return {"NAME": name, "PARAMS": dict(params)}, channels, sizes


def tiny_head_spec(name):
    if name not in TINY_HEADS:
        raise AssertionError(f"Add a tiny configuration of head {name!r} to tests/models/tiny_model_specs.py")
    return {"NAME": name, "PARAMS": dict(TINY_HEADS[name])}
