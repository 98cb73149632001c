"""Package discovery that pyproject.toml cannot express: converters/ installs as edgemnv2_converters and
firmware_templates/ (data only) as edgemnv2.firmware_templates."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["edgemnv2", "edgemnv2.*"])
    + ["edgemnv2.firmware_templates", "edgemnv2_converters"]
    + [f"edgemnv2_converters.{p}" for p in find_packages("converters")]
)
