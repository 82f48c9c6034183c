#!/usr/bin/env bash
# The wheels benchmarks/gpu_session.sh installs on the GPU machine, which has no Snakemake and
# cannot reach a package index: Snakemake and what it needs that the machine's image lacks
# (docs/clusters.md), for its Python 3.12, into .whl (git ignores it: add `/.whl/` to
# .git/info/exclude). About 26 MB; run once, here, where PyPI is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# versions as in requirements.txt
wheels=(annotated-types==0.8.0 argparse-dataclass==2.0.0 conda-inject==1.3.2 ConfigArgParse==1.9.0 docutils==0.22.4
        dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12 GitPython==3.2.1 greenlet==3.5.6 humanfriendly==10.0
        immutables==0.21 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 jupyter_core==5.9.1 nbformat==5.11.1
        platformdirs==4.14.8 PuLP==3.3.2 pydantic==2.14.4 pydantic_core==2.50.5 referencing==0.37.0 rpds-py==2026.9.1
        smart_open==7.7.1 smmap==5.0.3 snakemake==9.27.1 snakemake-interface-common==1.23.0
        snakemake-interface-executor-plugins==9.4.0 snakemake-interface-logger-plugins==2.1.0
        snakemake-interface-report-plugins==1.3.0 snakemake-interface-scheduler-plugins==2.0.2
        snakemake-interface-storage-plugins==4.4.1 SQLAlchemy==2.0.58 sqlmodel==0.0.37 tenacity==9.2.1
        throttler==1.2.3 traitlets==5.16.1 typing-inspection==0.4.5 yte==1.9.4)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl "${wheels[@]}"
python3 -m pip wheel -q --no-deps connection_pool==0.0.3 -w .whl  # published as a source archive only
ls .whl | wc -l
