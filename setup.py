"""ssl_ext: VISSL-style self-supervised learning plugins for long-tailed data."""
from setuptools import find_packages, setup

setup(
    name="ssl_ext",
    version="0.1.0",
    description="Self-supervised learning on long-tailed data: PMSN, MSBReg, class-imbalanced samplers, VISSL-style benchmarks",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["registry", "registry.*", "ssl_ext", "ssl_ext.*"]) + ["ssl_ext._configs"],
    # The YAML configs stay at the repository's top (configs_yaml/); the wheel ships them inside the
    # package as ssl_ext/_configs, where ssl_ext.config.paths.config_root() finds them once installed.
    package_dir={"ssl_ext._configs": "configs_yaml"},
    package_data={"ssl_ext._configs": ["*.yaml", "**/*.yaml", "**/*.json"]},
    install_requires=[
        "torch>=2.1,<=2.14.1",
        "torchvision>=0.16,<=0.29.1",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "classy-vision>=0.7.0",
        "submitit>=1.5",
        "hydra-core>=1.3",
        "omegaconf>=2.3",
        "numpy",
        "scikit-learn",
        "scipy",
        "tqdm",
        "matplotlib",
        "tensorboard",
        "timm>=1.0",
        "kornia>=0.7",  # batched per-sample augmentation (config.DATA.TRAIN.AUGMENT_ON=device)
        "pillow",
    ],
    extras_require={
        "cpu": ["faiss-cpu>=1.7"],
        "gpu": ["faiss-gpu>=1.7"],
        "dev": ["pytest>=7", "pytest-timeout"],
        # Experiment trackers (config.HOOKS.WANDB / config.HOOKS.MLFLOW); the MLflow client alone.
        "wandb": ["wandb>=0.17"],
        "mlflow": ["mlflow-skinny>=3.0"],
    },
    entry_points={
        "console_scripts": [
            "ssl-ext-run=ssl_ext.cli:main",
        ],
    },
)
